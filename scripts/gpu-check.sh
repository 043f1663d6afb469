#!/usr/bin/env bash
# Builds (release, on the development machine) the GPU test binaries and the rtrbm binary, and
# packs them with a run.sh into gpu-bundle/ (git-ignored). On the GPU machine (no Rust needed):
#     bash gpu-bundle/run.sh          # results also go to $OUT when it is set
# run.sh runs every test binary with REQUIRE_CUDA=1 REQUIRE_NVRTC=1 (a missing GPU is a failure
# there, not a skip) and prints a summary table: binary, passed, failed.
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS=(gpu_kernels nvrtc_compile)
BUNDLE=gpu-bundle
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin"

cargo build --release --bin rtrbm
cp target/release/rtrbm "$BUNDLE/bin/rtrbm"
# Test executables: from cargo's JSON messages (profile.test, target kind "test").
cargo test --release --no-run --message-format=json $(printf -- '--test %s ' "${TESTS[@]}") > "$BUNDLE/.build.json"
for t in "${TESTS[@]}"; do
  exe=$(python3 - "$t" "$BUNDLE/.build.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == name and m.get("executable"):
        print(m["executable"])
PY
)
  [ -n "$exe" ] || { echo "no executable found for test $t" >&2; exit 1; }
  cp "$exe" "$BUNDLE/bin/$t"
done
rm -f "$BUNDLE/.build.json"
cp scripts/gpu-bench.sh "$BUNDLE/bench.sh"
# bundle_rev REV NAME: the rtrbm binary of revision REV as bin/rtrbm-NAME (and its short hash in
# bin/rtrbm-NAME.rev), built in a worktree of its own.
bundle_rev() {
  local dir; dir="$(mktemp -d)/rev"
  git worktree add --detach "$dir" "$1" >/dev/null
  (cd "$dir" && CARGO_TARGET_DIR="$PWD/../target-rev" cargo build --release --bin rtrbm)
  cp "$dir/../target-rev/release/rtrbm" "$BUNDLE/bin/rtrbm-$2"
  git rev-parse --short "$1" > "$BUNDLE/bin/rtrbm-$2.rev"
  git worktree remove --force "$dir"
  rm -rf "$(dirname "$dir")"
}
# PREV_REV=<git rev>: also bundle the rtrbm binary of that revision as bin/rtrbm-prev, so that
# session.sh times the previous version on the same card in the same call (A/B).
if [ -n "${PREV_REV:-}" ]; then bundle_rev "$PREV_REV" prev; fi
# AB_REV=<git rev>: a second version for a narrower A/B (bin/rtrbm-ab): session.sh times its paper
# protocol, batch 64 and per-kernel profile beside this version's (e.g. the revision before one
# kernel change, to measure that change alone).
if [ -n "${AB_REV:-}" ]; then bundle_rev "$AB_REV" ab; fi
for f in "$BUNDLE"/bin/*; do [ -x "$f" ] && strip "$f"; done

cat > "$BUNDLE/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the bundled GPU tests on a machine with an NVIDIA GPU (see scripts/gpu-check.sh).
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
export REQUIRE_CUDA=1 REQUIRE_NVRTC=1 RUST_BACKTRACE=1
# the toolkit's ptxas assembles every kernel's PTX for sm_90 (tests/nvrtc_compile.rs)
[ -x /usr/local/cuda/bin/ptxas ] && export PTXAS=/usr/local/cuda/bin/ptxas REQUIRE_PTXAS=1
LOG="${OUT:-.}"
mkdir -p "$LOG"
nvidia-smi > "$LOG/nvidia-smi.txt" 2>&1 || true
./bin/rtrbm info > "$LOG/rtrbm-info.txt" 2>&1 || true
printf '%-16s %7s %7s %s\n' binary passed failed status > "$LOG/summary.txt"
overall=0
# run_one NAME BINARY TIMEOUT [test filter arguments]
run_one() {
  local name=$1 bin=$2 limit=$3; shift 3
  timeout "$limit" ./bin/$bin --test-threads=2 --nocapture "$@" > "$LOG/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || overall=1
  passed=$(grep -c '^test .* ok$' "$LOG/$name.log" || true)
  failed=$(grep -c '^test .* FAILED$' "$LOG/$name.log" || true)
  printf '%-16s %7s %7s rc=%s\n' "$name" "$passed" "$failed" "$rc" >> "$LOG/summary.txt"
}
run_one nvrtc_compile nvrtc_compile ${TEST_TIMEOUT:-120}
# the fused recurrences' blocks wait on each other (docs/PERFORMANCE.md Steps 13, 14): their
# tests run apart with a short limit, so that a hang there costs a minute and no other result
run_one gpu_kernels gpu_kernels ${TEST_TIMEOUT:-120} --skip fused_lstm_rtrbm
run_one gpu_kernels_fused gpu_kernels 60 fused_lstm_rtrbm
cat "$LOG/summary.txt"
for t in nvrtc_compile gpu_kernels gpu_kernels_fused; do
  if grep -q 'FAILED\|panicked' "$LOG/$t.log"; then echo "---- $t (failures) ----"; grep -A12 'panicked\|^failures:' "$LOG/$t.log" | head -120; fi
done
exit $overall
RUN
chmod +x "$BUNDLE/run.sh"
cp scripts/gpu-session.sh "$BUNDLE/session.sh"
cp scripts/gpu-quick.sh "$BUNDLE/quick.sh"
# the sweep that session.sh trains as one pack, with the config it builds on
mkdir -p "$BUNDLE/sweeps" "$BUNDLE/configs"
cp sweeps/jsb-32-packed.yaml "$BUNDLE/sweeps/"
cp configs/jsb_lstm_rtrbm.yaml "$BUNDLE/configs/"
# Checkpoints trained elsewhere, evaluated with the full AIS schedule by session.sh.
mkdir -p "$BUNDLE/ckpt"
mkdir -p "$BUNDLE/data"
for ds in jsb musedata nottingham piano_midi_de; do
  for m in rtrbm rnn_rbm lstm_rtrbm; do
    ck="runs/reproduce/${ds}_$m/best.safetensors"
    [ -e "$ck" ] && cp "$ck" "$BUNDLE/ckpt/${ds}_$m.safetensors"
  done
  # the test data of the datasets that are not shipped (licences): carried, never committed
  [ "$ds" != jsb ] && [ -e "../shared/data/polyphonic/$ds.json" ] && cp "../shared/data/polyphonic/$ds.json" "$BUNDLE/data/"
done
du -sh "$BUNDLE"
