#!/usr/bin/env bash
# A short GPU run (about 4-5 minutes, plus up to 3 with Nsight Compute; the eighth run of
# docs/GPU.md, before the opt-in rows, took 52 s), for checking one change: inside the bundle of scripts/gpu-check.sh
# (AB_REV=<the revision before the change>),
#     bash gpu-bundle/quick.sh
# the GPU tests, batch 64 (twice) with this version against bin/rtrbm-ab, both with recorded
# updates (compare their updates/s: revisions before the exact frame count overstate frames/s
# by 4.3%, docs/PERFORMANCE.md Step 12), batch 64 in length buckets, the kernel profiles of batch 64, the paper protocol and the packed sweep of 64 models
# (both versions), 256 models (this one), and the same with the opt-in kernels
# (RTRBM_KERNELS=gibbs-tc, rec-regs, fused-fwd, fused-bwd, all four), and, where Nsight Compute is installed, the stall
# reasons of the serial kernels. Everything lands in $OUT/quick.tgz.
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
L=/tmp/q; rm -rf $L; mkdir -p $L/logs
pack() { tar czf "${OUT:-$L}/quick.tgz" -C $L logs; }
OUT=$L/logs bash run.sh > $L/logs/tests.txt 2>&1; echo "tests rc=$?"; cat $L/logs/summary.txt; pack
for i in 1 2; do for bin in ./bin/rtrbm-ab ./bin/rtrbm; do
  tag=$([ $bin = ./bin/rtrbm ] && echo this || echo ab)
  timeout 60 $bin bench train --device cuda --batch 64 --updates 20 --json $L/logs/$tag-b64-$i.json 2>&1 | grep "^train" | sed "s/^/$tag: /"
done; done
# length-bucketed batches (train.bucket, opt-in; its own workload, not the target's)
timeout 60 ./bin/rtrbm bench train --device cuda --batch 64 --bucket --updates 20 --json $L/logs/this-b64-bucket.json 2>&1 | grep "^train" | sed "s/^/this: /"
pack
for bin in ./bin/rtrbm-ab ./bin/rtrbm; do
  tag=$([ $bin = ./bin/rtrbm ] && echo this || echo ab)
  RTRBM_PROFILE=1 timeout 60 $bin bench phases --device cuda --batch 64 --updates 20 > $L/logs/$tag-profile-b64.txt 2>&1
  echo "$tag profile b64 rc=$?"; grep -A9 '^kernel profile' $L/logs/$tag-profile-b64.txt
done; pack
for bin in ./bin/rtrbm-ab ./bin/rtrbm; do
  tag=$([ $bin = ./bin/rtrbm ] && echo this || echo ab)
  timeout 60 $bin bench train --device cuda --updates 200 --json $L/logs/$tag-b1.json 2>&1 | grep "^train" | sed "s/^/$tag: /"
  timeout 60 $bin bench sweep --device cuda --models 64 --pack 64 --threads 1 --updates 10 --json $L/logs/$tag-sweep-64.json 2>&1 | grep "^sweep" | sed "s/^/$tag: /"
done
timeout 60 ./bin/rtrbm bench sweep --device cuda --models 256 --pack 256 --threads 1 --updates 10 --json $L/logs/this-sweep-256.json 2>&1 | grep "^sweep"
pack
# the opt-in kernels against the rows above: tensor-core Gibbs chains (gibbs-tc), the LSTM
# with its weights in registers (rec-regs), LSTM-RTRBM's forward and backward recurrences each in
# one launch (fused-fwd, fused-bwd), and all four (with the 64-model sweep)
# (the fused kernels' blocks wait on each other: if a fused choice's first row runs out of time,
# the later choices with it are skipped rather than each waiting for its timeouts)
hung=""
for choice in gibbs-tc rec-regs fused-fwd fused-bwd gibbs-tc,rec-regs,fused-fwd,fused-bwd; do
  export RTRBM_KERNELS=$choice; f=${choice//,/+}
  skip=""; for h in $hung; do case ",$choice," in *",$h,"*) skip=$h ;; esac; done
  [ -n "$skip" ] && { echo "$choice: skipped ($skip timed out)"; continue; }
  timeout 60 ./bin/rtrbm bench train --device cuda --batch 64 --updates 20 --json $L/logs/$f-b64.json > $L/logs/$f-b64.txt 2>&1
  rc=$?; grep "^train" $L/logs/$f-b64.txt | sed "s/^/$choice: /"
  if [ $rc = 124 ]; then
    echo "$choice: batch 64 timed out"; hung="$hung $choice"; pack; continue
  fi
  timeout 60 ./bin/rtrbm bench train --device cuda --updates 200 --json $L/logs/$f-b1.json 2>&1 | grep "^train" | sed "s/^/$choice: /"
  case $choice in *,*)
    timeout 60 ./bin/rtrbm bench sweep --device cuda --models 64 --pack 64 --threads 1 --updates 10 --json $L/logs/$f-sweep-64.json 2>&1 | grep "^sweep" | sed "s/^/$choice: /" ;;
  esac
  RTRBM_PROFILE=1 timeout 60 ./bin/rtrbm bench phases --device cuda --batch 64 --updates 20 > $L/logs/$f-profile-b64.txt 2>&1
  echo "$choice profile b64 rc=$?"; grep -A6 '^kernel profile' $L/logs/$f-profile-b64.txt
  pack
done
# Where a frame of the serial kernels (and a Gibbs step) spends its time, for the next step:
# Nsight Compute's stall reasons and hottest instructions at batch 64, if the machine has it
# (one update's kernels; RTRBM_GRAPHS=0 so that each is a plain launch).
unset RTRBM_KERNELS
# (SKIP_NCU=1 skips it, for a short device budget)
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ "${SKIP_NCU:-0}" = 1 ] && NCU=
if [ -n "$NCU" ]; then
  RTRBM_GRAPHS=0 timeout 180 "$NCU" --target-processes all --kernel-name regex:'lstm_forward_v2|lstm_backward_v2|rtrbm_forward_v2|rtrbm_backward_v2|gibbs_chain' \
    --launch-count 5 --section SpeedOfLight --section Occupancy --section LaunchStats --section SchedulerStats \
    --section WarpStateStats --section SourceCounters \
    ./bin/rtrbm bench train --device cuda --batch 64 --updates 1 > $L/logs/ncu-b64.txt 2>&1
  echo "ncu rc=$?"; grep -E "^  [a-z_0-9]+(_v2|_r[0-9])? ?\(|Warp Cycles Per Issued|Issue Slots Busy|Stall|Duration" $L/logs/ncu-b64.txt | head -60
else
  echo "no Nsight Compute (ncu) on this machine"
fi
pack; echo done
