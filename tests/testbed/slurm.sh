#!/usr/bin/env bash
# A real Slurm on this machine, for the tests: install, start, stop.
#
#   tests/testbed/slurm.sh install            apt packages: slurmctld slurmd slurm-client munge pmix (root)
#   tests/testbed/slurm.sh start [NODES] [CPUS]  NODES slurmd daemons (node1..nodeN, default 4) claiming
#                                             CPUS CPUs each (default 8, more than the machine has, so the
#                                             manager's packing is tested for real) and 2 GPUs (count-only GRES)
#   tests/testbed/slurm.sh stop               scancel everything, stop the daemons by their pid files
#   tests/testbed/slurm.sh env                prints SLURM_CONF=... for clients
#
# Everything lives under $ENSEMBLE_SLURM_STATE (default /tmp/ensemble-slurm).  Runs as root.
# Ports: $ENSEMBLE_SLURM_PORT (default 6817) for slurmctld, +1 for SlurmdPort, +1+k for node k.
# A second testbed beside the first needs both set, e.g.
#   ENSEMBLE_SLURM_STATE=/tmp/ensemble-slurm-sim ENSEMBLE_SLURM_PORT=7817 tests/testbed/slurm.sh start 32 4
# (its own munged, socket and key under its state dir; stop with the same variables stops only it).
set -euo pipefail
S=${ENSEMBLE_SLURM_STATE:-/tmp/ensemble-slurm}
PORT=${ENSEMBLE_SLURM_PORT:-6817}
case "$PORT" in
    '' | *[!0-9]*) echo "ENSEMBLE_SLURM_PORT must be a port number, got '$PORT'" >&2; exit 2 ;;
esac
if [ "$PORT" = 6817 ]; then CLUSTER=testcluster; else CLUSTER=testcluster$PORT; fi
export SLURM_CONF=$S/slurm.conf

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/libpmix.so ]; then
        return
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge libpmix2 libpmix-dev >/dev/null
}

pids() {
    for f in "$S"/run/*.pid; do cat "$f" 2>/dev/null; done
}

running() {
    [ -e "$S/run/slurmctld.pid" ] && kill -0 "$(cat "$S/run/slurmctld.pid")" 2>/dev/null
}

write_conf() {
    local nodes=$1 cpus=$2 host
    host=$(hostname)
    mkdir -p "$S"/{munge,spool/ctld,run,log,tmp}
    chmod 755 "$S/munge"
    cat >"$S/slurm.conf" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge/munge.socket
StateSaveLocation=$S/spool/ctld
SlurmdSpoolDir=$S/spool/%n
TmpFS=$S/tmp/%n
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd-%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$S/log/jobcomp.txt
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=300
SlurmdParameters=config_overrides
GresTypes=gpu
CONF
    local k
    for k in $(seq 1 "$nodes"); do
        # Each node's TmpFS must exist: PMIx (srun --mpi=pmix) puts its per-step directories there.
        mkdir -p "$S/tmp/node$k"
        echo "NodeName=node$k NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 1 + k)) CPUs=$cpus RealMemory=8000 Gres=gpu:2 State=UNKNOWN" >>"$S/slurm.conf"
    done
    echo "PartitionName=debug Nodes=node[1-$nodes] Default=YES MaxTime=INFINITE State=UP" >>"$S/slurm.conf"
    # Two pretend GPUs per node: Slurm counts and binds them (CUDA_VISIBLE_DEVICES) by their files.
    mkdir -p "$S/dev"
    touch "$S/dev/gpu0" "$S/dev/gpu1"
    echo "NodeName=node[1-$nodes] Name=gpu File=$S/dev/gpu[0-1]" >"$S/gres.conf"
}

start() {
    local nodes=${1:-4} cpus=${2:-8}
    install
    if running; then
        echo "slurm already running under $S" >&2
        return
    fi
    rm -rf "$S"
    write_conf "$nodes" "$cpus"
    dd if=/dev/urandom of="$S/munge/munge.key" bs=1 count=1024 status=none
    chmod 400 "$S/munge/munge.key"
    munged --socket="$S/munge/munge.socket" --pid-file="$S/run/munged.pid" --log-file="$S/log/munged.log" \
        --seed-file="$S/munge/seed" --key-file="$S/munge/munge.key" --force
    slurmctld
    local k
    for k in $(seq 1 "$nodes"); do
        slurmd -N "node$k"
    done
    local tries=0
    until [ "$(sinfo -h -o '%T' 2>/dev/null | sort -u)" = "idle" ]; do
        tries=$((tries + 1))
        if [ $tries -gt 150 ]; then
            echo "slurm did not become idle:" >&2
            sinfo >&2 || true
            tail -n 5 "$S"/log/*.log >&2 || true
            exit 1
        fi
        sleep 0.2
    done
    echo "slurm up: $nodes nodes x $cpus CPUs under $S (export SLURM_CONF=$SLURM_CONF)"
}

stop() {
    if running; then
        scancel --full --quiet --user=root 2>/dev/null || true
    fi
    local pid
    for pid in $(pids); do kill "$pid" 2>/dev/null || true; done
    for pid in $(pids); do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    rm -f "$S"/run/*.pid
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    env) echo "SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 install|start [NODES] [CPUS]|stop|env" >&2; exit 2 ;;
esac
