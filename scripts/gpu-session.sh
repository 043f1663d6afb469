#!/usr/bin/env bash
# One GPU session in one call (the GPU machines have no Rust toolchain and little device time):
# run inside the bundle made by scripts/gpu-check.sh, on the GPU machine:
#     bash gpu-bundle/session.sh
# 1. the GPU tests (REQUIRE_CUDA=1: a missing GPU fails), 2. the benchmarks with the defaults
# (recorded updates, AIS on tensor cores) and their A/B rows on the same card: RTRBM_GRAPHS=0
# (unrecorded updates), RTRBM_KERNELS=ais-v2 (AIS benchmark and the full JSB test evaluation:
# times, and LLs that must agree), REC_AB=1 the sequential recurrences, AB=1 all v1 kernels; the
# packed sweep curve for SWEEP_MODELS; with bin/rtrbm-prev (PREV_REV= for gpu-check.sh) the same
# curve and phases for that version; with bin/rtrbm-ab (AB_REV=) the paper protocol, batch 64 and
# kernel profiles of that version beside this one's, both unrecorded, 3. a sweep of 32 JSB runs
# as one pack unless SKIP_SWEEP, 4. the README's main command on the GPU (LSTM-RTRBM on JSB,
# TRAIN_UPDATES updates, default 2000) unless SKIP_TRAIN, 5. only with EVALS=1 (minutes):
# full-schedule evaluations of the checkpoints in ckpt/ and the AIS convergence ladder (knobs
# EVAL_CKPTS, OTHER_BETAS, LADDER, SKIP_CONV). The default took 2 minutes on an H100 (sixth run,
# with the prev and ab blocks); EVALS=1 adds about 3.
# Everything lands in $OUT/session.tgz plus a summary on stdout.
# REHEARSAL=1 shrinks every workload (and skips the 32-run sweep) so that the whole script runs in
# a few minutes on the CUDA emulator (tests/cuda-emu) before a GPU session: it checks the script,
# not the GPU. Its figures are CPU emulation and mean nothing.
set -uo pipefail
cd "$(dirname "$0")"
if [ -n "${REHEARSAL:-}" ]; then
  : "${CHAINS:=512}" "${BETAS:=20}" "${U_ALL:=4}" "${U_B1:=4}" "${U_B64:=2}" "${U_SWEEP:=2}"
  : "${SWEEP_MODELS:=1 4}" "${AB_MODELS:=1 4}" "${SKIP_SWEEP:=1}" "${TRAIN_UPDATES:=20}" "${TEST_TIMEOUT:=900}"
  : "${EVAL_ARGS:=--ais-betas 50 --ais-runs 2}" "${REC_MODELS:=4}"
  export TEST_TIMEOUT SKIP_SWEEP
fi
CHAINS=${CHAINS:-472500} BETAS=${BETAS:-100}   # bench AIS: the JSB test set x 100 runs
U_ALL=${U_ALL:-100} U_B1=${U_B1:-200} U_B64=${U_B64:-20} U_SWEEP=${U_SWEEP:-10}   # updates per repetition
REC_MODELS=${REC_MODELS:-64}   # the packed sweep of the RTRBM_GRAPHS=0 and rec-v1 A/B rows
EVAL_ARGS=${EVAL_ARGS:-}   # empty: the full schedule (14,500 betas x 100 runs)
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
W=/tmp/session; rm -rf "$W"; mkdir -p "$W/logs" "$W/evals"
B=./bin/rtrbm
OUTDIR="${OUT:-$W/out}"; mkdir -p "$OUTDIR"
# pack what exists so far after every step, so a run cut short still returns its results
step() { tar czf "$OUTDIR/session.tgz" -C "$W" logs evals 2>/dev/null; echo "== $1 ($(date +%T))"; }

step tests
OUT="$W/logs" bash run.sh > "$W/logs/tests.txt" 2>&1; rc=$?; echo "tests rc=$rc"; cat "$W/logs/summary.txt"
# The tensor-core AIS kernel (the default AIS) has its own tests, which force it whatever
# RTRBM_KERNELS says: if only they fail, AIS runs v2 from here on (RTRBM_KERNELS=ais-v2).
TC_OK=1
grep -E '^test .*tensor_cores.* (FAILED|ok)$' "$W/logs/gpu_kernels.log"
grep -qE '^test .*tensor_cores.* FAILED$' "$W/logs/gpu_kernels.log" && TC_OK=0
if [ $rc -ne 0 ] && [ $TC_OK -eq 0 ] && ! grep -hE '^test .* FAILED$' "$W/logs/"*.log | grep -vq tensor_cores; then
  echo "only the tensor-core AIS tests failed: AIS runs v2 (RTRBM_KERNELS=ais-v2)"; rc=0; export RTRBM_KERNELS=ais-v2
fi
if [ $rc -ne 0 ] && [ -z "${RTRBM_KERNELS:-}" ]; then
  echo "tests failed with the default kernels: re-running them with RTRBM_KERNELS=rec-v1 (sequential recurrences)"
  mkdir -p "$W/logs/rec-v1"; RTRBM_KERNELS=rec-v1 OUT="$W/logs/rec-v1" bash run.sh > "$W/logs/rec-v1/tests.txt" 2>&1; rc2=$?
  echo "rec-v1 tests rc=$rc2"; cat "$W/logs/rec-v1/summary.txt"
  if [ $rc2 -eq 0 ]; then export RTRBM_KERNELS=rec-v1; else
    echo "... and with RTRBM_KERNELS=v1 (all first kernels), used from here on if they pass"
    export RTRBM_KERNELS=v1; mkdir -p "$W/logs/v1"; OUT="$W/logs/v1" bash run.sh > "$W/logs/v1/tests.txt" 2>&1; echo "v1 tests rc=$?"; cat "$W/logs/v1/summary.txt"
  fi
fi

step bench
timeout 200 $B bench all --device cuda --updates "$U_ALL" --chains "$CHAINS" --betas "$BETAS" --json "$W/logs/bench-cuda.json" 2>&1 | tee "$W/logs/bench.txt" | grep -v "per second"
# where the time of one update goes (host issue time vs device time, phase by phase)
timeout 100 $B bench phases --device cuda --updates "$U_B1" --json "$W/logs/bench-phases-b1.json" 2>&1 | tee "$W/logs/bench-phases-b1.txt"
timeout 100 $B bench phases --device cuda --batch 64 --updates "$U_B64" --json "$W/logs/bench-phases-b64.json" 2>&1 | tee "$W/logs/bench-phases-b64.txt"
# the device time of every kernel (CUDA events around each launch; not for throughput figures)
RTRBM_PROFILE=1 timeout 100 $B bench phases --device cuda --updates "$U_B1" > "$W/logs/profile-b1.txt" 2>&1; echo "profile b1 rc=$?"; grep -A12 '^kernel profile' "$W/logs/profile-b1.txt"
RTRBM_PROFILE=1 timeout 100 $B bench phases --device cuda --batch 64 --updates "$U_B64" > "$W/logs/profile-b64.txt" 2>&1; echo "profile b64 rc=$?"; grep -A12 '^kernel profile' "$W/logs/profile-b64.txt"
# A/B of the split-K recurrences (REC_AB=1): the same phases and paper protocol with the
# sequential ones (sixth run: 1,556 against 954 updates/s)
if [ -n "${REC_AB:-}" ] && [ -z "${RTRBM_KERNELS:-}" ]; then
  RTRBM_KERNELS=rec-v1 timeout 100 $B bench phases --device cuda --updates "$U_B1" --json "$W/logs/bench-phases-b1-rec-v1.json" 2>&1 | tee "$W/logs/bench-phases-b1-rec-v1.txt"
  RTRBM_KERNELS=rec-v1 timeout 100 $B bench train --device cuda --updates "$U_B1" --json "$W/logs/bench-train-rec-v1.json" 2>&1 | grep "^train"
  RTRBM_KERNELS=rec-v1 timeout 100 $B bench sweep --device cuda --models "$REC_MODELS" --pack "$REC_MODELS" --threads 1 --updates "$U_SWEEP" --json "$W/logs/bench-sweep-$REC_MODELS-rec-v1.json" 2>&1 | grep "^sweep"
fi
# A/B of recorded updates (the default: after a shape's first two updates, each update is two
# small copies, the gather and one CUDA graph launch) against RTRBM_GRAPHS=0: the paper protocol,
# batch 64 and the packed sweep, against the rows above (same card, same call)
RTRBM_GRAPHS=0 timeout 100 $B bench train --device cuda --updates "$U_B1" --json "$W/logs/bench-train-nographs.json" 2>&1 | grep "^train"
RTRBM_GRAPHS=0 timeout 100 $B bench train --device cuda --batch 64 --updates "$U_B64" --json "$W/logs/bench-train-b64-nographs.json" 2>&1 | grep "^train"
RTRBM_GRAPHS=0 timeout 100 $B bench sweep --device cuda --models "$REC_MODELS" --pack "$REC_MODELS" --threads 1 --updates "$U_SWEEP" --json "$W/logs/bench-sweep-$REC_MODELS-nographs.json" 2>&1 | grep "^sweep"
# the opt-in tensor-core Gibbs chains (RTRBM_KERNELS=gibbs-tc, not yet run on a GPU) against the
# default rows: their tests are in the suite above (gibbs_tensor_cores_agree_with_v2)
if [ -z "${RTRBM_KERNELS:-}" ]; then
  RTRBM_KERNELS=gibbs-tc timeout 100 $B bench train --device cuda --updates "$U_B1" --json "$W/logs/bench-train-gibbs-tc.json" 2>&1 | grep "^train" | sed "s/^/gibbs-tc: /"
  RTRBM_KERNELS=gibbs-tc timeout 100 $B bench train --device cuda --batch 64 --updates "$U_B64" --json "$W/logs/bench-train-b64-gibbs-tc.json" 2>&1 | grep "^train" | sed "s/^/gibbs-tc: /"
  RTRBM_KERNELS=gibbs-tc timeout 100 $B bench sweep --device cuda --models "$REC_MODELS" --pack "$REC_MODELS" --threads 1 --updates "$U_SWEEP" --json "$W/logs/bench-sweep-$REC_MODELS-gibbs-tc.json" 2>&1 | grep "^sweep" | sed "s/^/gibbs-tc: /"
fi
# A/B of the AIS kernels (default: tensor cores, kernels/ais_tc.cu) against RTRBM_KERNELS=ais-v2
# on the benchmark's AIS and on the full JSB test evaluation (14,500 betas x 100 runs; target
# under 5 s): times, and log-likelihoods that must agree within their standard errors
echo "ais-tc tests passed: $TC_OK"
RTRBM_KERNELS=ais-v2 timeout 100 $B bench ais --device cuda --chains "$CHAINS" --betas "$BETAS" --json "$W/logs/bench-ais-v2.json" 2>&1 | tee "$W/logs/bench-ais-v2.txt" | grep -v "per second"
if [ -e ckpt/jsb_lstm_rtrbm.safetensors ]; then
  for k in default ais-v2; do
    s0=$(date +%s.%N)
    RTRBM_KERNELS=$([ $k = default ] && echo "${RTRBM_KERNELS:-}" || echo ais-v2) timeout 100 $B eval --device cuda --checkpoint ckpt/jsb_lstm_rtrbm.safetensors --data jsb --no-acc $EVAL_ARGS --json "$W/evals/jsb_lstm_rtrbm.eval-$k.json" > "$W/logs/eval-jsb-$k.txt" 2>&1
    echo "JSB test eval ($k) rc=$? wall $(awk "BEGIN{print $(date +%s.%N) - $s0}") s (process, incl. kernel compiles): $(grep -E '^LL' "$W/logs/eval-jsb-$k.txt" | tr -s ' ' | cut -c1-110)"
  done
fi
if [ -n "${AB:-}" ]; then RTRBM_KERNELS=v1 timeout 200 $B bench all --device cuda --updates "$U_ALL" --chains "$CHAINS" --betas "$BETAS" --json "$W/logs/bench-cuda-v1.json" 2>&1 | tee "$W/logs/bench-v1.txt" | grep -v "per second"; fi

step "sweep curve: N models in one pack (model index in the launch grid)"
for n in ${SWEEP_MODELS:-1 8 64 256}; do
  timeout 120 $B bench sweep --device cuda --models "$n" --pack "$n" --threads 1 --updates "$U_SWEEP" --json "$W/logs/bench-sweep-$n.json" 2>&1 | grep "^sweep"
done

if [ -x bin/rtrbm-prev ]; then
step "A/B: the previous version ($(cat bin/rtrbm-prev.rev 2>/dev/null)) on the same card"
for n in ${AB_MODELS:-1 64 256}; do
  echo "prev: $(timeout 120 ./bin/rtrbm-prev bench sweep --device cuda --models "$n" --pack "$n" --threads 1 --updates "$U_SWEEP" --json "$W/logs/prev-bench-sweep-$n.json" 2>&1 | grep "^sweep")"
done
timeout 100 ./bin/rtrbm-prev bench phases --device cuda --updates "$U_B1" --json "$W/logs/prev-bench-phases-b1.json" > "$W/logs/prev-bench-phases-b1.txt" 2>&1
echo "prev phases b1 rc=$?"; grep -E "per update|load|negatives" "$W/logs/prev-bench-phases-b1.txt"
fi

if [ -x bin/rtrbm-ab ]; then
step "A/B: $(cat bin/rtrbm-ab.rev 2>/dev/null) (AB_REV) against this version, both unrecorded: paper protocol, batch 64, kernel profiles"
for bin in ./bin/rtrbm-ab $B; do
  tag=$([ "$bin" = "$B" ] && echo this || echo ab)
  RTRBM_GRAPHS=0 timeout 100 $bin bench train --device cuda --updates "$U_B1" --json "$W/logs/ab-$tag-train-b1.json" 2>&1 | grep "^train" | sed "s/^/$tag: /"
  RTRBM_GRAPHS=0 timeout 100 $bin bench train --device cuda --batch 64 --updates "$U_B64" --json "$W/logs/ab-$tag-train-b64.json" 2>&1 | grep "^train" | sed "s/^/$tag: /"
  RTRBM_PROFILE=1 timeout 100 $bin bench phases --device cuda --updates "$U_B1" > "$W/logs/ab-$tag-profile-b1.txt" 2>&1
  echo "$tag profile b1 rc=$?"; grep -A8 '^kernel profile' "$W/logs/ab-$tag-profile-b1.txt"
  RTRBM_PROFILE=1 timeout 100 $bin bench phases --device cuda --batch 64 --updates "$U_B64" > "$W/logs/ab-$tag-profile-b64.txt" 2>&1
  echo "$tag profile b64 rc=$?"; grep -A8 '^kernel profile' "$W/logs/ab-$tag-profile-b64.txt"
done
fi

if [ -z "${SKIP_SWEEP:-}" ]; then
step "sweep of 32 JSB runs as one pack"
rm -rf runs/sweeps/jsb-32-packed  # a fresh sweep each session (a finished one would be skipped)
timeout "${SWEEP_TIMEOUT:-240}" $B sweep run sweeps/jsb-32-packed.yaml --devices all --pack 32 > "$W/logs/sweep-run.txt" 2>&1; echo "sweep run rc=$?"; tail -2 "$W/logs/sweep-run.txt"
$B sweep report sweeps/jsb-32-packed.yaml > "$W/logs/sweep-report.txt" 2>&1; echo "sweep report rc=$?"; head -8 "$W/logs/sweep-report.txt"
cp runs/sweeps/jsb-32-packed/report.md "$W/logs/sweep-report.md" 2>/dev/null
grep -ho '"pack_size": [0-9]*' runs/sweeps/jsb-32-packed/runs/*/done.json | sort | uniq -c
fi

if [ -z "${SKIP_TRAIN:-}" ]; then
step "train (README main command, on the GPU)"
timeout "${TRAIN_TIMEOUT:-150}" $B train --device cuda --out "$W/jsb_gpu" --max-updates "${TRAIN_UPDATES:-2000}" --quiet > "$W/logs/train-gpu.txt" 2>&1; echo "train rc=$?"; tail -2 "$W/logs/train-gpu.txt"
cp "$W/jsb_gpu/metrics.jsonl" "$W/logs/train-gpu-metrics.jsonl" 2>/dev/null
if [ -e "$W/jsb_gpu/best.safetensors" ]; then
  timeout 100 $B eval --device cuda --checkpoint "$W/jsb_gpu/best.safetensors" --data jsb $EVAL_ARGS --json "$W/evals/jsb_gpu_lstm_rtrbm.eval_full.json" > "$W/logs/eval-jsb_gpu.txt" 2>&1
  echo "jsb_gpu_lstm_rtrbm rc=$?: $(grep -E '^(LL|ACC)' "$W/logs/eval-jsb_gpu.txt" | tr -s ' ' | cut -c1-110 | tr '\n' ' ')"
fi
fi
if [ -n "${EVALS:-}" ]; then
step "full-schedule evaluations"
for ck in ${EVAL_CKPTS:-ckpt/jsb_*.safetensors ckpt/[mnp]*.safetensors}; do
  [ -e "$ck" ] || continue
  name=$(basename "$ck" .safetensors)
  ds=${name%_lstm_rtrbm}; ds=${ds%_rnn_rbm}; ds=${ds%_rtrbm}
  if [ "$ds" = jsb ]; then data=jsb; sched=(); else data="data/$ds.json"; sched=(--ais-betas "${OTHER_BETAS:-1450}" --ais-runs "${OTHER_RUNS:-100}"); fi
  timeout 200 $B eval --device cuda --checkpoint "$ck" --data "$data" --split test "${sched[@]}" --json "$W/evals/$name.eval_full.json" > "$W/logs/eval-$name.txt" 2>&1
  echo "$name rc=$?: $(grep -E '^(LL|ACC)' "$W/logs/eval-$name.txt" | tr -s ' ' | cut -c1-110 | tr '\n' ' ')"
done
if [ -e ckpt/jsb_lstm_rtrbm.safetensors ] && [ -z "${SKIP_CONV:-}" ]; then
  step convergence
  timeout "${CONV_TIMEOUT:-240}" $B eval --device cuda --checkpoint ckpt/jsb_lstm_rtrbm.safetensors --data jsb --no-acc --convergence --convergence-betas "${LADDER:-100,1000,14500,50000}" --json "$W/evals/jsb_lstm_rtrbm.convergence.json" > "$W/logs/convergence.txt" 2>&1
  echo "convergence rc=$?"; grep -A8 '^convergence' "$W/logs/convergence.txt"
fi

fi
step done
echo "wrote $OUTDIR/session.tgz"
