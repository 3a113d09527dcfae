#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for tests/slurm/test_slurm.py and for
# trying workflow/profiles/slurm by hand:
#
#   tests/slurm/cluster.sh check   # may this machine get a test cluster? (changes nothing, except
#                                  # stopping a test cluster that an interrupted run left behind)
#   tests/slurm/cluster.sh start   # install the Debian packages if needed, write the config, start daemons
#   tests/slurm/cluster.sh stop    # cancel its jobs, stop the daemons it started, remove its config
#
# What it sets up: one node (this machine, as `slurmd -C` sees it) in one default partition
# `test`, jobs run as root, no accounting database (so `sacct` does not work: use
# `--slurm-status-command squeue`), no cgroups, and fake GPUs (gres `gpu`, one per CPU, backed by
# empty files) so that jobs asking for `--gpus=1` get scheduled; no CUDA is visible, so work runs on CPU.
#
# Everything lives under $ARCHSCALE_SLURM_DIR (default /tmp/archscale-slurm) except the config,
# which must also be at /etc/slurm/slurm.conf: the slurm-jobstep executor strips every SLURM_*
# variable (SLURM_CONF too) before its inner `srun`. It uses a private munged (own key and socket),
# so a system munge, if any, is left alone.
#
# It never touches a machine that already runs SLURM: a running slurmctld/slurmd, a slurm.conf
# it did not write, or a working `sinfo` make `check`/`start` exit 3. Exit 4: not root, or the
# packages are missing and there is no apt-get to install them. Both print `SKIP: <reason>`.
# Exit 1: anything else went wrong (the daemons' logs are printed).
set -euo pipefail

DIR=${ARCHSCALE_SLURM_DIR:-/tmp/archscale-slurm}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
MARKER="# archscale-test-cluster: written by tests/slurm/cluster.sh (state in $DIR); removed by 'cluster.sh stop'"
MARKER_PREFIX="# archscale-test-cluster:"
PACKAGES=(slurmctld slurmd slurm-client munge)
COMMANDS=(slurmctld slurmd sbatch squeue sinfo scontrol scancel munged mungekey)

log() { echo "cluster.sh: $*" >&2; }
skip() { echo "SKIP: $2"; exit "$1"; }
die() {
    log "ERROR: $*"
    for f in "$DIR"/log/*.log; do [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 40 "$f" >&2; }; done
    exit 1
}

ours() { [ -f "$CONF" ] && grep -q "^$MARKER_PREFIX" "$CONF"; }
have_all_commands() { local c; for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null || return 1; done; }

# Kill a daemon named $2 whose pid is in file $1, if it is still that daemon; wait for it to go.
stop_pidfile() {
    local pidfile=$1 name=$2 pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do [ -d /proc/"$pid" ] || break; sleep 0.2; done
        [ -d /proc/"$pid" ] && { log "$name ($pid) ignored SIGTERM, killing it"; kill -KILL "$pid" 2>/dev/null || true; }
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------
check() {
    local needs_root="a test cluster needs root (it writes $CONF, may install packages and runs the daemons)"
    # A test cluster left behind by an interrupted run is ours to clean up, not a reason to skip.
    if ours; then
        [ "$(id -u)" = 0 ] || skip 4 "$needs_root"
        log "found a test cluster left by an earlier run; stopping it"
        stop
    fi
    if [ -e "$CONF" ] || [ -e /etc/slurm-llnl/slurm.conf ]; then
        skip 3 "this machine already has a SLURM configuration ($CONF or /etc/slurm-llnl/slurm.conf) not written by the test"
    fi
    local d
    for d in slurmctld slurmd slurmdbd; do
        if pgrep -x "$d" >/dev/null; then skip 3 "a $d is already running on this machine"; fi
    done
    if command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; then
        skip 3 "sinfo works here, so this machine is already part of a SLURM cluster"
    fi
    [ "$(id -u)" = 0 ] || skip 4 "$needs_root"
    if ! have_all_commands; then
        command -v apt-get >/dev/null || skip 4 "the SLURM/munge packages are not installed and there is no apt-get"
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------
install_packages() {
    have_all_commands && return 0
    log "installing ${PACKAGES[*]} with apt-get"
    local before after p
    before=$(pgrep -x 'munged|slurmctld|slurmd' | sort || true)
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=120)
    # Try without `apt-get update` first (fast when the lists are fresh); update and retry otherwise.
    if ! timeout 300 apt-get install "${opts[@]}" "${PACKAGES[@]}" >"$DIR/log/apt.log" 2>&1; then
        timeout 300 apt-get update -q >>"$DIR/log/apt.log" 2>&1 || { tail -n 20 "$DIR/log/apt.log" >&2; die "apt-get update failed"; }
        timeout 300 apt-get install "${opts[@]}" "${PACKAGES[@]}" >>"$DIR/log/apt.log" 2>&1 \
            || { tail -n 20 "$DIR/log/apt.log" >&2; die "apt-get install ${PACKAGES[*]} failed"; }
    fi
    # Where no policy-rc.d stops it, a package's postinst may start its service (munge); those
    # daemons were started by this install, so stop them again: the cluster uses its own munged.
    after=$(pgrep -x 'munged|slurmctld|slurmd' | sort || true)
    for p in $(comm -13 <(echo "$before") <(echo "$after")); do
        log "stopping $(cat /proc/"$p"/comm 2>/dev/null) ($p), started by the package installation"
        kill -TERM "$p" 2>/dev/null || true
    done
    have_all_commands || die "the packages are installed but some of ${COMMANDS[*]} are still missing"
}

write_config() {
    # The node exactly as slurmd detects it (CPUs, sockets, cores, threads, RealMemory): a node
    # that claims more than slurmd finds is set DOWN/INVALID.
    local node_line node cpus
    node_line=$(slurmd -C | head -n 1)
    node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node_line")
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
    [ -n "$node" ] && [ -n "$cpus" ] || die "could not parse 'slurmd -C': $node_line"
    echo "$node" >"$DIR/nodename"

    mkdir -p "$CONF_DIR"
    cat >"$CONF" <<EOF
$MARKER
ClusterName=archscale-test
SlurmctldHost=$node(127.0.0.1)
# jobs run as the submitting user (root in CI); both daemons run as root
SlurmUser=root
SlurmdUser=root
# authentication through the private munged of this cluster
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd, no cgroups, no accounting database
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
# CPUs and memory are consumable, per CPU (not per core), so cpus-per-task=1 jobs pack
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=500
SchedulerType=sched/backfill
# keep finished jobs visible to squeue/scontrol for an hour: the status check uses squeue, and the test
# reads every training job's record with scontrol after the whole study (7-8 minutes on 2 cores, beside
# the local run in the background); with 300 s the earliest jobs were forgotten by then
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=120
GresTypes=gpu
$node_line NodeAddr=127.0.0.1 Gres=gpu:$cpus State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # Fake GPUs, one per CPU. A gpu GRES needs one device file per GPU: empty files do (task/none
    # neither binds nor fences devices), and no CUDA device exists, so the work still runs on CPU.
    mkdir -p "$DIR/fake-gpu"
    local i files
    for i in $(seq 0 $((cpus - 1))); do : >"$DIR/fake-gpu/gpu$i"; done
    files=$DIR/fake-gpu/gpu0
    [ "$cpus" -gt 1 ] && files="$DIR/fake-gpu/gpu[0-$((cpus - 1))]"
    { echo "$MARKER"; echo "AutoDetect=off"; echo "NodeName=$node Name=gpu File=$files"; } >"$GRES_CONF"
}

start_daemons() {
    # A private munge key and socket; the socket's folder must be reachable by everyone.
    mkdir -p "$DIR/munge" "$DIR/munge-key"
    chmod 0755 "$DIR" "$DIR/munge"
    chmod 0700 "$DIR/munge-key"
    [ -f "$DIR/munge-key/munge.key" ] || mungekey --create --keyfile="$DIR/munge-key/munge.key" \
        || die "mungekey failed"
    chmod 0600 "$DIR/munge-key/munge.key"
    munged --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge-key/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge-key/munged.seed" || die "munged did not start"
    timeout 10 bash -c "until munge -n -S '$DIR/munge/munge.socket.2' | unmunge -S '$DIR/munge/munge.socket.2' >/dev/null 2>&1; do sleep 0.2; done" \
        || die "munge does not answer on $DIR/munge/munge.socket.2"

    # -c: start from an empty state; the daemons fork into the background and write pid files.
    slurmctld -c -i || die "slurmctld did not start"
    timeout 30 bash -c 'until scontrol ping 2>/dev/null | grep -q UP; do sleep 0.5; done' \
        || die "slurmctld does not answer scontrol ping"
    slurmd -N "$(cat "$DIR/nodename")" || die "slurmd did not start"
    local state
    for _ in $(seq 120); do
        state=$(sinfo -h -N -o %t 2>/dev/null | head -n 1 || true)
        case "$state" in
            idle|mix|alloc) log "cluster up: node $(cat "$DIR/nodename") is $state"; return 0 ;;
            inval*) break ;;  # slurmd found less than the config claims: no use waiting
            down*|drain*)
                scontrol update nodename="$(cat "$DIR/nodename")" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    scontrol show node >&2 || true
    die "the node did not become idle (last state: '${state:-none}')"
}

start() {
    check
    # Our own folders; $DIR itself must be traversable by everyone (munge socket below it).
    mkdir -p "$DIR/log" "$DIR/run" "$DIR/state" "$DIR/spool"
    chmod 0755 "$DIR"
    install_packages
    write_config
    start_daemons
}

# ---------------------------------------------------------------------------------------------
stop() {
    if ours; then
        # Cancel every job of this cluster (it is ours alone) and give them a moment to end.
        local jobs
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            log "cancelling jobs: $(echo $jobs)"
            timeout 10 scancel $jobs 2>/dev/null || true
            timeout 30 bash -c 'while [ -n "$(squeue -h -t R,CG,PD -o %A 2>/dev/null)" ]; do sleep 0.5; done' || true
        fi
    fi
    stop_pidfile "$DIR/run/slurmd.pid" slurmd
    stop_pidfile "$DIR/run/slurmctld.pid" slurmctld
    stop_pidfile "$DIR/run/munged.pid" munged
    if ours && pgrep -x slurmstepd >/dev/null; then
        log "WARNING: slurmstepd processes are still running (pids $(pgrep -x slurmstepd | tr '\n' ' '))"
    fi
    if ours; then rm -f "$CONF"; fi
    if [ -f "$GRES_CONF" ] && grep -q "^$MARKER_PREFIX" "$GRES_CONF"; then rm -f "$GRES_CONF"; fi
    # Keep the logs only when asked to (ARCHSCALE_SLURM_KEEP_LOGS=1); everything else goes.
    if [ "${ARCHSCALE_SLURM_KEEP_LOGS:-0}" = 1 ]; then
        rm -rf "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/munge" "$DIR/munge-key" "$DIR/nodename"
    else
        rm -rf "$DIR"
    fi
    log "stopped"
}

case "${1:-}" in
    check) check; echo "OK" ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 check|start|stop" >&2; exit 2 ;;
esac
