#!/usr/bin/env bash
# A real single-node Slurm cluster, started here, runs a small sweep as an sbatch array.
#
# Installs Slurm if absent (apt, as root), starts munge + slurmctld + slurmd with a slurm.conf in a
# temporary folder (SLURM_CONF), writes the array script with `rtrbm sweep slurm`, submits it, polls
# squeue, then checks that every run has done.json, that every array task COMPLETED, and that
# `rtrbm sweep report` works. The daemons are stopped by their PIDs.
#
# Exit status: 0 success; 77 Slurm cannot be installed or started here (the reason is printed);
# anything else a real failure. See /work/shared/notes/slurm-facts.md and docs/SWEEPS.md.
#
# Environment: RTRBM_BIN (default: build target/release/rtrbm with --no-default-features),
# KEEP=1 keeps the temporary folder.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
skip() { echo "slurm-test: SKIP: $*" >&2; exit 77; }
fail() { echo "slurm-test: FAIL: $*" >&2; exit 1; }
T0=$(date +%s)

# --- the binary --------------------------------------------------------------------------------
BIN="${RTRBM_BIN:-}"
if [ -z "$BIN" ]; then
    (cd "$REPO" && cargo build --release --no-default-features -q) || fail "cargo build failed"
    BIN="$REPO/target/release/rtrbm"
fi
[ -x "$BIN" ] || fail "no rtrbm binary at $BIN"

# --- Slurm and munge ---------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || skip "Slurm is not installed and we are not root (cannot apt-get install)"
    command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get"
    echo "slurm-test: installing slurmctld slurmd slurm-client munge" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge) >/tmp/slurm-test-apt.$$.log 2>&1 \
        || skip "apt-get install failed: $(tail -3 /tmp/slurm-test-apt.$$.log)"
fi
[ "$(id -u)" = 0 ] || skip "the single-node cluster runs its daemons as root; run this as root"

T="$(mktemp -d /tmp/rtrbm-slurm.XXXXXX)"
MUNGE_PID=""
cleanup() {
    for f in "$T/slurmd.pid" "$T/slurmctld.pid"; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    [ -n "$MUNGE_PID" ] && kill "$MUNGE_PID" 2>/dev/null
    sleep 0.5
    for f in "$T/slurmd.pid" "$T/slurmctld.pid"; do
        [ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "slurm-test: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# munge: reuse a working one, else start our own
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    [ -r /etc/munge/munge.key ] || skip "no munge key at /etc/munge/munge.key"
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null
    chmod 0755 /run/munge
    if command -v runuser >/dev/null; then
        runuser -u munge -- munged >"$T/munged.out" 2>&1 || skip "munged does not start: $(cat "$T/munged.out")"
    else
        su -s /bin/sh munge -c munged >"$T/munged.out" 2>&1 || skip "munged does not start: $(cat "$T/munged.out")"
    fi
    for _ in $(seq 50); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.1; done
    MUNGE_PID="$(cat /run/munge/munged.pid 2>/dev/null)"
    (munge -n | unmunge) >/dev/null 2>&1 || skip "munge does not work after starting munged"
fi

# slurm.conf: one node, no cgroups, no accounting; ports chosen per run so that parallel tests
# do not collide
HOST="$(hostname -s)"
PORT=$(( 20000 + ($$ % 5000) * 2 ))
mkdir -p "$T/state" "$T/spool"
CONF="$T/slurm.conf"
cat >"$CONF" <<CONF
ClusterName=rtrbmtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
NodeName=n1 NodeAddr=127.0.0.1 CPUs=4 RealMemory=500 State=UNKNOWN
PartitionName=debug Nodes=n1 Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$CONF"
slurmctld -f "$CONF" >"$T/slurmctld.out" 2>&1 || skip "slurmctld does not start: $(cat "$T/slurmctld.out"; tail -5 "$T/slurmctld.log" 2>/dev/null)"
slurmd -f "$CONF" -N n1 >"$T/slurmd.out" 2>&1 || skip "slurmd does not start: $(cat "$T/slurmd.out"; tail -5 "$T/slurmd.log" 2>/dev/null)"
STATE=""
for _ in $(seq 60); do
    STATE="$(sinfo -h -n n1 -o %t 2>/dev/null | head -1)"
    [ "$STATE" = idle ] && break
    sleep 0.5
done
[ "$STATE" = idle ] || skip "the node did not become idle (state '$STATE'): $(tail -5 "$T/slurmctld.log" 2>/dev/null)"
echo "slurm-test: cluster up ($(sinfo --version), node n1 idle) after $(( $(date +%s) - T0 )) s" >&2

# --- the sweep: 32 tiny JSB runs, 4 array tasks sharing the queue, packs of up to 8 models -------
cat >"$T/sweep.yaml" <<YAML
name: slurm-test
out: out
base: $REPO/configs/tiny.yaml
config:
  train: {max_updates: 20, epochs: 1, valid_max_frames: 50}
grid:
  train.lr: [0.01, 0.02, 0.03, 0.05]
  train.seed: [1, 2, 3, 4, 5, 6, 7, 8]
YAML
"$BIN" sweep slurm "$T/sweep.yaml" --tasks 4 --cpus-per-task 1 --pack 8 --time 5 --out "$T/sweep.sbatch" >/dev/null \
    || fail "rtrbm sweep slurm failed"
echo "slurm-test: array script:" >&2
sed 's/^/    /' "$T/sweep.sbatch" >&2
JOB="$(sbatch --parsable "$T/sweep.sbatch")" || fail "sbatch failed"
JOB="${JOB%%;*}"
echo "slurm-test: submitted job $JOB" >&2
for _ in $(seq 480); do
    [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && break
    sleep 0.5
done
[ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] || { squeue -j "$JOB" >&2; fail "job $JOB still queued after 240 s"; }
INFO="$(scontrol -o show job "$JOB" 2>/dev/null)"
echo "$INFO" | grep -o 'JobId=[0-9]* ArrayJobId=[0-9]* ArrayTaskId=[0-9]*\|JobState=[A-Z_]*\|ExitCode=[0-9:]*' \
    | paste -d' ' - - - >&2
TASKS=$(echo "$INFO" | grep -c 'JobState=COMPLETED')
BAD=$(echo "$INFO" | grep -v 'JobState=COMPLETED' | grep -c 'JobId=')
for f in "$T"/out/slurm/*.out; do echo "--- $f"; cat "$f"; done >&2
[ "$TASKS" = 4 ] && [ "$BAD" = 0 ] || fail "expected 4 COMPLETED array tasks, got $TASKS completed, $BAD other"
DONE=$(ls "$T"/out/runs/*/done.json 2>/dev/null | wc -l)
[ "$DONE" = 32 ] || fail "expected 32 runs with done.json, found $DONE"
"$BIN" sweep report "$T/sweep.yaml" >"$T/report.txt" 2>&1 || fail "rtrbm sweep report failed: $(cat "$T/report.txt")"
ROWS=$(grep -c '| done |' "$T/out/report.md")
[ "$ROWS" = 32 ] || fail "report.md has $ROWS done rows, expected 32"
[ -s "$T/out/best.yaml" ] || fail "no best.yaml"
WORKERS=$(grep -ho '"worker": "[^"]*"' "$T"/out/runs/*/done.json | sort -u | wc -l)
PACKS=$(grep -ho '"pack_size": [0-9]*' "$T"/out/runs/*/done.json | awk '{print $2}' | sort -n | uniq -c \
    | awk '{printf " %s in packs of %s", $1, $2}')
cat "$T/out/report.md"
echo "slurm-test: OK: job $JOB, 4 array tasks COMPLETED, 32 of 32 runs done by $WORKERS workers" \
    "(runs:$PACKS), report written;" \
    "$(( $(date +%s) - T0 )) s in all" >&2
exit 0
