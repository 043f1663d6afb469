#!/usr/bin/env python3
"""Lane-by-lane emulation of kernels/ais_tc.cu (ais_chains_tc_n{NT}) against the plain AIS chain.

No GPU is needed. The emulation follows the kernel's index arithmetic line for line: the block's
power-of-two scale and f16 hi/lo split, the B fragments it stages, the mma.m16n8k16 fragment
layouts of the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"), the reuse
of the accumulator layout as the next A operand, the Philox block each lane computes and the
shuffle with lane t ^ 1, and the increment in f32 as tc_unit and tc_rare compute it (per lane and
chain row, then the sum over the 4 lanes of a chain). The reference walks each chain plainly (the
semantics of Cpu::ais: uniform (counter, chain * n + unit), x = v W, W h, same schedule) in f64.

It checks that (1) every uniform a lane uses is the one the plain chain uses, bit for bit; (2)
every product the emulated tensor cores return matches the plain product to f32 accuracy; (3)
the log-weights agree. What it cannot check is the hardware: whether the PTX does what the ISA
says, and the tensor cores' accumulation (it rounds each mma's sum once, where the hardware
truncates); the GPU tests (tests/gpu_kernels.rs) do that. Nor packed models or 32-bit index wrap.

    python3 scripts/emulate_ais_tc.py        # exits non-zero on a mismatch
"""
import math
import sys

import numpy as np

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox(c, k0, k1):
    c = list(c)
    for r in range(10):
        if r > 0:
            k0 = (k0 + W0) & MASK
            k1 = (k1 + W1) & MASK
        p0, p1 = M0 * c[0], M1 * c[2]
        hi0, lo0, hi1, lo1 = p0 >> 32, p0 & MASK, p1 >> 32, p1 & MASK
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def word(seed, stream, counter, index):
    """common.cuh philox_word: word index & 3 of block (index >> 2, counter, stream, 0)."""
    c = philox([(index & MASK) >> 2, counter & MASK, stream & MASK, 0], seed & MASK, seed >> 32)
    return c[index & 3]


def u01(w):
    return (np.float32(w >> 8) + np.float32(0.5)) * np.float32(1.0 / 16777216.0)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def softplus(x):
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


# ---------------------------------------------------------------- the plain chain (reference)
def plain_ais(W, bv_t, bh_t, N, V, H, M, betas, seed, stream, counter):
    out = np.zeros(N * M)
    for chain in range(N * M):
        f = chain // M
        bv, bh = bv_t[f], bh_t[f]
        v = np.array([u01(word(seed, stream, counter, chain * V + i)) < np.float32(sigmoid(bv[i])) for i in range(V)], float)
        acc = 0.0
        for k in range(1, len(betas)):
            bp, bk = float(betas[k - 1]), float(betas[k])
            x = v @ W.astype(np.float64)
            acc += sum(softplus(bk * x[j] + bh[j]) - softplus(bp * x[j] + bh[j]) for j in range(H))
            if k + 1 == len(betas):
                break
            ctr = counter + 2 * k - 1
            h = np.array([u01(word(seed, stream, ctr, chain * H + j)) < sigmoid(bk * x[j] + bh[j]) for j in range(H)], float)
            pv = W.astype(np.float64) @ h
            v = np.array([u01(word(seed, stream, ctr + 1, chain * V + i)) < sigmoid(bk * pv[i] + bv[i]) for i in range(V)], float)
        out[chain] = acc
    return out


# ---------------------------------------------------------------- the kernel, lane by lane
def f16(x):
    return np.float16(x)


def scale_of(W):
    m = float(np.max(np.abs(W))) if W.size else 0.0
    if not (m > 0.0) or m > 3.4e38:
        return 1.0
    e = math.frexp(np.float32(m))[1] - 1  # m in [2^e, 2^(e+1))
    sh = max(-100, min(100, 14 - e))
    return 2.0 ** sh


def b_fragment(W, rows, cols, ks, ns, s, kt, nt, l):
    """tc_b_fragment: (hi[4], lo[4]) as float16, for k = 16 kt + 2 (l % 4) + {0, 1, 8, 9}."""
    n, k0 = 8 * nt + (l >> 2), 16 * kt + 2 * (l & 3)
    flat = W.reshape(-1)
    hi, lo = [], []
    for dk in (0, 1, 8, 9):
        k = k0 + dk
        w = np.float32(flat[k * ks + n * ns] * np.float32(s)) if (k < rows and n < cols) else np.float32(0)
        h = f16(w)
        hi.append(h)
        lo.append(f16(np.float32(w) - np.float32(h)))
    return hi, lo


def mma(c, a_regs, b_regs):
    """PTX mma.m16n8k16.row.col f32 += f16 x f16: a_regs[lane] = 8 f16 (a0..a7), b_regs[lane] = 4 f16
    (b0..b3), c[lane] = 4 f32. Builds A (16x16), B (16x8) from the ISA's fragment layouts."""
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        for i in range(8):
            row = g if (i < 2 or 4 <= i < 6) else g + 8
            col = t * 2 + (i & 1) + (8 if i >= 4 else 0)
            A[row, col] = float(a_regs[lane][i])
        for i in range(4):
            row = t * 2 + (i & 1) + (8 if i >= 2 else 0)
            B[row, g] = float(b_regs[lane][i])
    D = A @ B
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        for i in range(4):
            row = g if i < 2 else g + 8
            col = t * 2 + (i & 1)
            c[lane][i] = np.float32(np.float64(c[lane][i]) + D[row, col])


def uniform_words(seed, stream, counter, blk0, blk1, nt):
    """tc_uniform_words for the whole warp: returns w0[lane] (2 words), w1[lane] (2 words)."""
    c = []
    for lane in range(32):
        t = lane & 3
        odd = t & 1
        idx = ((blk1 if odd else blk0)[lane] + 2 * nt + (t >> 1)) & 0x3FFFFFFF
        c.append(philox([idx, counter & MASK, stream & MASK, 0], seed & MASK, seed >> 32))
    send0 = [c[l][0] if (l & 1) else c[l][2] for l in range(32)]
    send1 = [c[l][1] if (l & 1) else c[l][3] for l in range(32)]
    r0 = [send0[l ^ 1] for l in range(32)]  # __shfl_xor_sync(.., 1)
    r1 = [send1[l ^ 1] for l in range(32)]
    w0, w1 = [], []
    for l in range(32):
        odd = l & 1
        w0.append((r0[l], r1[l]) if odd else (c[l][0], c[l][1]))
        w1.append((c[l][2], c[l][3]) if odd else (r0[l], r1[l]))
    return w0, w1


class Checks:
    uniforms = 0
    products = 0
    worst_product = 0.0
    rare = 0


F = np.float32


def fmaf(a, b, c):
    """f32 fused multiply-add: exact product and sum in f64 (exact for f32 inputs up to the
    final rounding in all but double-rounding corner cases), rounded once."""
    return F(float(a) * float(b) + float(c))


def tc_unit(x, bh, bps, dls, bks, Y, d):
    """kernels/ais_tc.cu tc_unit (+ tc_rare) in f32: returns (sigma(a), Y, d)."""
    b, z = fmaf(bps, x, bh), F(dls * x)
    if abs(b) < 10 and abs(z) < 0.125:
        eb = F(math.exp(b))
        sb = F(eb * F(1.0 / F(1 + eb)))
        em = fmaf(z, F(1 / 720), F(1 / 120))
        for c in (1 / 24, 1 / 6, 0.5, 1.0):
            em = fmaf(z, em, F(c))
        em = F(em * z)
        y = F(sb * em)
        Y = fmaf(Y, y, F(Y + y))
        ea = fmaf(eb, em, eb)
        return F(ea * F(1.0 / F(1 + ea))), Y, d
    Checks.rare += 1
    a = fmaf(bks, x, bh)
    if a > 0 and b > 0:
        inc = F(z + F(F(math.log1p(math.exp(-a))) - F(math.log1p(math.exp(-b)))))
    else:
        inc = F(F(softplus(a)) - F(softplus(b)))
    return F(sigmoid(a)), Y, F(d + inc)


def tc_ais_warp(W, bv_t, bh_t, N, V, H, M, betas, seed, stream, counter, NT, base, ref_check):
    """One warp (16 chains from `base`) of ais_chains_tc_impl<NT>; returns {chain: logw}."""
    KT = (NT + 1) // 2
    s = scale_of(W)
    inv_s = 1.0 / s
    ntv, nth = (V + 7) >> 3, (H + 7) >> 3
    bx = {(kt, nt, l): b_fragment(W, V, H, H, 1, s, kt, nt, l) for kt in range(KT) for nt in range(NT) for l in range(32)}
    bp = {(kt, nt, l): b_fragment(W, H, V, 1, H, s, kt, nt, l) for kt in range(KT) for nt in range(NT) for l in range(32)}
    total = N * M
    lanes = range(32)
    g = [l >> 2 for l in lanes]
    t = [l & 3 for l in lanes]
    chain0 = [base + g[l] for l in lanes]
    chain1 = [base + g[l] + 8 for l in lanes]
    f0 = [min(c, total - 1) // M for c in chain0]
    f1 = [min(c, total - 1) // M for c in chain1]
    vblk0 = [((c * V) & MASK) >> 2 for c in chain0]
    vblk1 = [((c * V) & MASK) >> 2 for c in chain1]
    hblk0 = [((c * H) & MASK) >> 2 for c in chain0]
    hblk1 = [((c * H) & MASK) >> 2 for c in chain1]

    def sample(ctr, blk0, blk1, nt, n, chains, probs):
        """tc_sample for all lanes; probs[lane] = 4 probabilities; returns s0, s1 (lists of 2 bits)."""
        w0, w1 = uniform_words(seed, stream, ctr, blk0, blk1, nt)
        s0, s1 = [], []
        for l in lanes:
            for r, w in ((0, w0[l]), (1, w1[l])):
                for e in range(2):
                    u = 8 * nt + 2 * t[l] + e
                    c = chains[r][l]
                    if u < n:  # the uniform the plain chain uses for (chain, unit)
                        assert w[e] == word(seed, stream, ctr, c * n + u), (ctr, c, u)
                        Checks.uniforms += 1
            s0.append([1.0 if u01(w0[l][e]) < np.float32(probs[l][e]) else 0.0 for e in range(2)])
            s1.append([1.0 if u01(w1[l][e]) < np.float32(probs[l][2 + e]) else 0.0 for e in range(2)])
        return s0, s1

    def a_regs(S, kt):
        """The A fragment of k-tile kt from sample words S[nt][lane] = ([2 bits of chain 0], [chain 1])."""
        out = []
        for l in lanes:
            lo = S[2 * kt][l]
            hi = S[2 * kt + 1][l] if 2 * kt + 1 < NT else ([0.0, 0.0], [0.0, 0.0])
            out.append([f16(x) for x in (lo[0][0], lo[0][1], lo[1][0], lo[1][1], hi[0][0], hi[0][1], hi[1][0], hi[1][1])])
        return out

    zero = ([0.0, 0.0], [0.0, 0.0])
    vs = [[zero] * 32 for _ in range(NT)]
    hs = [[zero] * 32 for _ in range(NT)]
    for nt in range(ntv):
        probs = []
        for l in lanes:
            u = 8 * nt + 2 * t[l]
            probs.append([sigmoid(bv_t[f0[l]][u]), sigmoid(bv_t[f0[l]][u + 1]), sigmoid(bv_t[f1[l]][u]), sigmoid(bv_t[f1[l]][u + 1])] if u < V else [0.0] * 4)
        s0, s1 = sample(counter, vblk0, vblk1, nt, V, (chain0, chain1), probs)
        vs[nt] = [(s0[l], s1[l]) for l in lanes]

    def unit_bits(S, n, chains_of):
        """Plain 0/1 vectors per chain from the lanes' sample words (to check the products)."""
        out = {}
        for l in lanes:
            for r in range(2):
                c = chains_of[r][l]
                vec = out.setdefault(c, np.zeros(n))
                for nt in range(NT):
                    for e in range(2):
                        u = 8 * nt + 2 * t[l] + e
                        if u < n:
                            vec[u] = S[nt][l][r][e]
        return out

    def tile_product(S, Bfrag, nt):
        """The 4 accumulators of each lane for output tile nt: S (samples, the A fragments of the
        KT k-tiles) times the staged operand Bfrag (hi then lo), as tc_tile in the kernel."""
        c = [[np.float32(0)] * 4 for _ in lanes]
        for kt in range(KT):
            A = a_regs(S, kt)
            mma(c, A, [Bfrag[(kt, nt, l)][0] for l in lanes])
            mma(c, A, [Bfrag[(kt, nt, l)][1] for l in lanes])
        return c

    acc = {c: 0.0 for c in chain0 + chain1}
    bp_ = float(np.float32(betas[0]))
    for k in range(1, len(betas)):
        bk = F(betas[k])
        bks, bps, dls = F(bk * F(inv_s)), F(F(bp_) * F(inv_s)), F(F(bk - F(bp_)) * F(inv_s))
        x = [tile_product(vs, bx, nt) for nt in range(NT)]
        vbits = unit_bits(vs, V, (chain0, chain1))
        for l in lanes:  # products: the lane's x against v W
            for r, ch in ((0, chain0[l]), (1, chain1[l])):
                xr = vbits[ch] @ W.astype(np.float64)
                mag = vbits[ch] @ np.abs(W.astype(np.float64))  # sum of |terms|: the error's scale
                for nt in range(nth):
                    for e in range(2):
                        u = 8 * nt + 2 * t[l] + e
                        if u < H:
                            got = float(x[nt][l][2 * r + e]) * inv_s
                            err = abs(got - xr[u]) / max(1.0, mag[u])
                            Checks.worst_product = max(Checks.worst_product, err)
                            Checks.products += 1
        # per lane and chain row, as in the kernel: d, Y; then d + log1p(Y) summed over the quad
        dl = [[F(0), F(0)] for _ in lanes]
        Yl = [[F(0), F(0)] for _ in lanes]
        sample_next = k + 1 < len(betas)
        hctr = counter + 2 * k - 1
        for nt in range(nth):
            probs = []
            for l in lanes:
                ph = [0.0] * 4
                u0 = 8 * nt + 2 * t[l]
                if u0 < H:
                    for q in range(4):
                        r, e = q >> 1, q & 1
                        bh = bh_t[(f0, f1)[r][l]][u0 + e]
                        ph[q], Yl[l][r], dl[l][r] = tc_unit(x[nt][l][q], bh, bps, dls, bks, Yl[l][r], dl[l][r])
                probs.append(ph)
            if sample_next:
                s0, s1 = sample(hctr, hblk0, hblk1, nt, H, (chain0, chain1), probs)
                hs[nt] = [(s0[l], s1[l]) for l in lanes]
        for c in acc:
            quad = [(l, r) for l in lanes for r in range(2) if (chain0, chain1)[r][l] == c]
            acc[c] += float(sum((F(dl[l][r] + F(math.log1p(Yl[l][r]))) for l, r in quad), F(0)))
        bp_ = bk
        if not sample_next:
            break
        hbits = unit_bits(hs, H, (chain0, chain1))
        for nt in range(ntv):
            c = tile_product(hs, bp, nt)
            probs = []
            for l in lanes:
                u0 = 8 * nt + 2 * t[l]
                p = [0.0] * 4
                for q in range(4):
                    r, e = q >> 1, q & 1
                    ch = (chain0, chain1)[r][l]
                    if u0 + e < V:
                        pr = W.astype(np.float64)[u0 + e] @ hbits[ch]
                        mag = np.abs(W.astype(np.float64))[u0 + e] @ hbits[ch]
                        got = float(c[l][q]) * inv_s
                        Checks.worst_product = max(Checks.worst_product, abs(got - pr) / max(1.0, mag))
                        Checks.products += 1
                        p[q] = F(1.0 / F(1 + F(math.exp(-fmaf(bks, c[l][q], bv_t[(f0, f1)[r][l]][u0 + e])))))
                probs.append(p)
            s0, s1 = sample(hctr + 1, vblk0, vblk1, nt, V, (chain0, chain1), probs)
            vs[nt] = [(s0[l], s1[l]) for l in lanes]
    return {c: acc[c] for c in acc if c < total}


def main():
    rng = np.random.default_rng(7)
    failures = 0
    # (V, H, NT, weight scale, betas): both layers within NT tiles; odd NT (NT = 11 is the 88-key
    # piano roll), V or H % 8 == 4; large weights on a short schedule drive the rare branch
    for V, H, NT, ws, nb in ((12, 16, 2, 0.3, 41), (16, 12, 2, 0.3, 41), (20, 28, 4, 0.3, 41), (24, 20, 3, 0.3, 41),
                             (12, 20, 3, 0.3, 41), (12, 16, 2, 3.0, 11), (88, 88, 11, 0.1, 4)):
        N, M = 2, 9  # 18 chains: one full warp and one partial (chains past N M are masked)
        W = (rng.normal(0, ws, (V, H))).astype(np.float32)
        bv = rng.normal(-1, 0.5, (N, V)).astype(np.float32)
        bh = rng.normal(0, 0.5, (N, H)).astype(np.float32)
        betas = np.linspace(0, 1, nb).astype(np.float32)
        seed, stream, counter = 0x1234_5678_9ABC_DEF0, 77, 1000
        ref = plain_ais(W, bv, bh, N, V, H, M, betas, seed, stream, counter)
        got = {}
        for base in range(0, N * M, 16):
            got.update(tc_ais_warp(W, bv, bh, N, V, H, M, betas, seed, stream, counter, NT, base, True))
        diffs = [abs(got[c] - ref[c]) for c in range(N * M)]
        worst = max(diffs)
        agree = sum(dd <= 1e-4 for dd in diffs)
        print(f"V={V} H={H} NT={NT} W~N(0,{ws}^2) {nb} betas: {agree}/{N * M} chains within 1e-4 (worst {worst:.2e})")
        if agree < N * M:
            failures += 1
    print(f"uniforms checked bit for bit: {Checks.uniforms}; products checked: {Checks.products}, "
          f"worst error {Checks.worst_product:.2e} of the sum of |terms|; units on the rare branch: {Checks.rare}")
    if Checks.worst_product > 1e-6:  # the split's bound is 2^-22 = 2.4e-7 of sum |W| (+ f32 rounding)
        failures += 1
    if failures:
        print("MISMATCH", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
