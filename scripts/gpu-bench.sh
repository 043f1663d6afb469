#!/usr/bin/env bash
# A/B benchmark of the CUDA chain kernels on the GPU machine. Run it inside gpu-bundle/ (built by
# scripts/gpu-check.sh, which also copies this script there as bench.sh), or from the repository
# root (it then uses gpu-bundle/bin/rtrbm):
#     bash gpu-bundle/bench.sh         # JSON and logs go to $OUT (default: the current folder)
# Runs `rtrbm bench all --device cuda` twice: with the v2 chain kernels (default) and with
# RTRBM_KERNELS=v1 (the first kernels: gibbs_chain, gibbs_marginals, ais_chains), then prints both
# tables. Each run is bounded by a timeout so one slow variant cannot eat the device budget.
set -uo pipefail
cd "$(dirname "$0")"
if [ -x ./bin/rtrbm ]; then BIN=./bin/rtrbm; elif [ -x ../gpu-bundle/bin/rtrbm ]; then BIN=../gpu-bundle/bin/rtrbm; else
  echo "no rtrbm binary (run scripts/gpu-check.sh first)" >&2; exit 1; fi
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
LOG="${OUT:-.}"
mkdir -p "$LOG"
LIMIT="${BENCH_TIMEOUT:-150}"
rc=0
timeout "$LIMIT" "$BIN" bench all --device cuda --json "$LOG/bench-v2.json" > "$LOG/bench-v2.log" 2>&1 || rc=1
RTRBM_KERNELS=v1 timeout "$LIMIT" "$BIN" bench all --device cuda --json "$LOG/bench-v1.json" > "$LOG/bench-v1.log" 2>&1 || rc=1
echo "==== v2 (default) ===="; cat "$LOG/bench-v2.log"
echo "==== v1 (RTRBM_KERNELS=v1) ===="; cat "$LOG/bench-v1.log"
exit $rc
