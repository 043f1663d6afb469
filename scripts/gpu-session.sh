#!/usr/bin/env bash
# One GPU session in one call (the GPU machines have no Rust toolchain and little device time):
# run inside the bundle made by scripts/gpu-check.sh, on the GPU machine:
#     bash gpu-bundle/session.sh
# 1. the GPU tests (REQUIRE_CUDA=1: a missing GPU fails), 2. the benchmarks, 3. the README's main
# command on the GPU (full default training of LSTM-RTRBM on JSB) and its full-schedule evaluation,
# 4. full-schedule evaluations of the checkpoints in ckpt/ (models trained elsewhere) and the AIS
# convergence ladder. Everything lands in $OUT/session.tgz plus a summary on stdout.
set -uo pipefail
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
W=/tmp/session; rm -rf "$W"; mkdir -p "$W/logs" "$W/evals"
B=./bin/rtrbm
OUTDIR="${OUT:-$W/out}"; mkdir -p "$OUTDIR"
step() { echo "== $1 ($(date +%T))"; }

step tests
OUT="$W/logs" bash run.sh > "$W/logs/tests.txt" 2>&1; echo "tests rc=$?"; cat "$W/logs/summary.txt"

step bench
timeout 200 $B bench all --device cuda --updates 100 --chains 472500 --betas 100 --json "$W/logs/bench-cuda.json" 2>&1 | tee "$W/logs/bench.txt" | grep -v "per second"
if [ -n "${AB:-}" ]; then RTRBM_KERNELS=v1 timeout 200 $B bench all --device cuda --updates 100 --chains 472500 --betas 100 --json "$W/logs/bench-cuda-v1.json" 2>&1 | tee "$W/logs/bench-v1.txt" | grep -v "per second"; fi

step "train (README main command, on the GPU)"
timeout 240 $B train --device cuda --out "$W/jsb_gpu" --quiet > "$W/logs/train-gpu.txt" 2>&1; echo "train rc=$?"; tail -2 "$W/logs/train-gpu.txt"
cp "$W/jsb_gpu/metrics.jsonl" "$W/logs/train-gpu-metrics.jsonl" 2>/dev/null; cp "$W/jsb_gpu/best.safetensors" "$W/evals/jsb_gpu_lstm_rtrbm.safetensors" 2>/dev/null

step "full-schedule evaluations"
for ck in ckpt/jsb_*.safetensors "$W/evals/jsb_gpu_lstm_rtrbm.safetensors" ckpt/[mnp]*.safetensors; do
  [ -e "$ck" ] || continue
  name=$(basename "$ck" .safetensors)
  ds=${name%_lstm_rtrbm}; ds=${ds%_rnn_rbm}; ds=${ds%_rtrbm}
  if [ "$ds" = jsb ] || [ "$ds" = jsb_gpu ]; then data=jsb; sched=(); else data="data/$ds.json"; sched=(--ais-betas "${OTHER_BETAS:-1450}"); fi
  timeout 200 $B eval --device cuda --checkpoint "$ck" --data "$data" --split test "${sched[@]}" --json "$W/evals/$name.eval_full.json" > "$W/logs/eval-$name.txt" 2>&1
  echo "$name rc=$?: $(grep -E '^(LL|ACC)' "$W/logs/eval-$name.txt" | tr -s ' ' | cut -c1-110 | tr '\n' ' ')"
done
if [ -e ckpt/jsb_lstm_rtrbm.safetensors ]; then
  step convergence
  timeout 200 $B eval --device cuda --checkpoint ckpt/jsb_lstm_rtrbm.safetensors --data jsb --no-acc --convergence --convergence-betas "${LADDER:-100,1000,14500,50000}" --json "$W/evals/jsb_lstm_rtrbm.convergence.json" > "$W/logs/convergence.txt" 2>&1
  echo "convergence rc=$?"; grep -A8 '^convergence' "$W/logs/convergence.txt"
fi
rm -f "$W/evals/"*.safetensors
tar czf "$OUTDIR/session.tgz" -C "$W" logs evals
echo "wrote $OUTDIR/session.tgz"
