#!/usr/bin/env bash
# slurm-local.sh -- run a private one-node Slurm cluster (munged + slurmctld +
# slurmd) without systemd, with every file (config, key, sockets, state, logs)
# inside one directory.
#
#   slurm-local.sh start DIR     start (or restart on top of existing state)
#   slurm-local.sh stop DIR      cancel jobs, stop slurmd/slurmctld/munged
#   slurm-local.sh status DIR    show daemons / sinfo / squeue
#   slurm-local.sh env DIR       print "export SLURM_CONF=..." for client cmds
#
# After start, client commands need:   export SLURM_CONF=DIR/slurm.conf
# (start also writes DIR/env.sh containing exactly that line).
#
# Needs (Debian 12): apt-get install slurmctld slurmd slurm-client munge
# Tested with slurm-wlm 22.05.8 (Debian 12), munge 0.5.15, run as root.
#
# Tunables (environment):
#   SLURM_LOCAL_CPUS      CPUs advertised for the node   (default: nproc)
#   SLURM_LOCAL_MEM_MB    RealMemory in MB               (default: 90% of MemTotal)
#   SLURM_LOCAL_CTLD_PORT slurmctld port                 (default: first free from 16817)
#   SLURM_LOCAL_SLURMD_PORT slurmd port                  (default: first free after ctld port)
#   SLURM_LOCAL_MIN_JOB_AGE seconds a finished job stays visible to
#                         squeue/scontrol                (default: 86400)
#   SLURM_LOCAL_TIMEOUT   seconds to wait for node idle  (default: 60)
#   SLURM_LOCAL_DEBUG     SlurmctldDebug/SlurmdDebug     (default: info)
#   SLURM_LOCAL_TASK_PLUGIN     TaskPlugin               (default: task/none;
#                         task/affinity pins each task to its CPUs)
#   SLURM_LOCAL_SCHEDULER_TYPE  SchedulerType            (default: sched/backfill)
#   SLURM_LOCAL_SCHED_PARAMS    SchedulerParameters      (default: batch_sched_delay=0,
#                         sched_interval=1,bf_interval=1,sched_min_interval=0)
set -euo pipefail

die() { echo "slurm-local: error: $*" >&2; exit 1; }
log() { echo "slurm-local: $*" >&2; }

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 2 ] || usage
CMD=$1
DIR=$2
case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR" ;; esac
DIR=${DIR%/}

CONF="$DIR/slurm.conf"
MDIR="$DIR/munge"            # munged: key, socket, pid, log, seed
SOCK="$MDIR/munge.socket"
MPID="$MDIR/munged.pid"
CTLD_PID="$DIR/run/slurmctld.pid"
SLURMD_PID="$DIR/run/slurmd.pid"

pid_alive() { # pidfile
  [ -s "$1" ] || return 1
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

port_in_use() { # port
  if command -v ss >/dev/null 2>&1; then
    ss -Htln 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$1\$"
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

free_port() { # start
  local p=$1
  while port_in_use "$p"; do p=$((p + 1)); done
  echo "$p"
}

show_logs() {
  for f in "$MDIR/munged.log" "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    if [ -f "$f" ]; then
      echo "----- last lines of $f -----" >&2
      tail -n 25 "$f" >&2
    fi
  done
}

stop_pidfile() { # pidfile name
  local pf=$1 name=$2 p i
  [ -s "$pf" ] || return 0
  p=$(cat "$pf")
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then
      log "$name (pid $p) did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$pf"
}

fail_start() { # message: show logs, stop whatever was started, exit 1
  show_logs
  do_stop >/dev/null 2>&1 || true
  die "$*"
}

do_start() {
  for b in munged mungekey slurmctld slurmd sinfo scontrol; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found (apt-get install slurmctld slurmd slurm-client munge)"
  done
  if pid_alive "$CTLD_PID" || pid_alive "$SLURMD_PID" || pid_alive "$MPID"; then
    die "a cluster already seems to run from $DIR (run: $0 stop $DIR)"
  fi

  local host user cpus mem ctld_port slurmd_port min_age timeout dbg sched_type sched_params task_plugin
  host=$(hostname -s 2>/dev/null || echo localhost)
  [ -n "$host" ] || host=localhost
  user=$(id -un)
  cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
  if [ -n "${SLURM_LOCAL_MEM_MB:-}" ]; then
    mem=$SLURM_LOCAL_MEM_MB
  else
    mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  fi
  min_age=${SLURM_LOCAL_MIN_JOB_AGE:-86400}
  timeout=${SLURM_LOCAL_TIMEOUT:-60}
  dbg=${SLURM_LOCAL_DEBUG:-info}
  task_plugin=${SLURM_LOCAL_TASK_PLUGIN:-task/none}
  sched_type=${SLURM_LOCAL_SCHEDULER_TYPE:-sched/backfill}
  sched_params=${SLURM_LOCAL_SCHED_PARAMS:-batch_sched_delay=0,sched_interval=1,bf_interval=1,sched_min_interval=0}
  ctld_port=${SLURM_LOCAL_CTLD_PORT:-$(free_port 16817)}
  slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-$(free_port $((ctld_port + 1)))}
  port_in_use "$ctld_port" && die "port $ctld_port (slurmctld) is in use"
  port_in_use "$slurmd_port" && die "port $slurmd_port (slurmd) is in use"

  mkdir -p "$DIR" "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/log" "$MDIR"
  # munged refuses group/world-writable dirs on the key/socket path and needs
  # o+x on the socket directory so that clients can reach the socket.
  chmod 0755 "$DIR"
  chmod 0711 "$MDIR"
  if [ ! -s "$MDIR/munge.key" ]; then
    mungekey --create --bits=1024 --keyfile="$MDIR/munge.key" >/dev/null 2>&1 \
      || dd if=/dev/urandom of="$MDIR/munge.key" bs=128 count=1 status=none
  fi
  chmod 0400 "$MDIR/munge.key"     # owned by $user == the user munged runs as
  rm -f "$SOCK" "$SOCK.lock"

  cat >"$CONF" <<EOF
# generated by slurm-local.sh on $(date -u +%FT%TZ)
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=$dbg
SlurmdDebug=$dbg
# no cgroups / systemd in a container
ProctrackType=proctrack/linuxproc
TaskPlugin=$task_plugin
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
# no slurmdbd: sacct only works with --completion (-c), reading this file
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
# finished jobs (incl. every array task) stay in squeue -t all / scontrol
MinJobAge=$min_age
# scheduling: several 1-CPU tasks per node, fast turnaround
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=$sched_type
SchedulerParameters=$sched_params
MessageTimeout=5
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
ReturnToService=2
# trust the node description below instead of the detected hardware
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  echo "export SLURM_CONF=$CONF" >"$DIR/env.sh"
  export SLURM_CONF="$CONF"

  # --- munged (runs as the invoking user, which owns the key) ---
  munged --socket="$SOCK" --key-file="$MDIR/munge.key" --pid-file="$MPID" \
         --log-file="$MDIR/munged.log" --seed-file="$MDIR/munged.seed" \
    || { fail_start "munged failed to start"; }
  local i
  for i in $(seq 1 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  [ -S "$SOCK" ] || { fail_start "munged socket $SOCK did not appear"; }
  if command -v munge >/dev/null 2>&1; then
    munge -S "$SOCK" -n | unmunge -S "$SOCK" >/dev/null \
      || { fail_start "munge round-trip test failed"; }
  fi

  # --- slurmctld, slurmd (both daemonize and write their pid files) ---
  slurmctld -f "$CONF" || { fail_start "slurmctld failed to start"; }
  for i in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
  slurmd -f "$CONF" -N "$host" || { fail_start "slurmd failed to start"; }

  local st=""
  for i in $(seq 1 $((timeout * 5))); do
    st=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -n1) || true
    case "$st" in idle|idle\*|mixed|allocated) [ "$st" = "idle*" ] || break ;; esac
    sleep 0.2
  done
  case "$st" in
    idle|mixed|allocated) ;;
    *) sinfo -N -l >&2 2>&1 || true
       scontrol show node "$host" >&2 2>&1 || true
       fail_start "node $host not idle after ${timeout}s (state '$st')" ;;
  esac
  log "cluster up: node $host ($cpus CPUs, ${mem} MB), ports $ctld_port/$slurmd_port"
  echo "export SLURM_CONF=$CONF"
}

do_stop() {
  export SLURM_CONF="$CONF"
  if pid_alive "$CTLD_PID"; then
    # cancel every job so no slurmstepd / job processes are left behind
    scancel --partition=local 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      [ -z "$(squeue -h -t RUNNING,COMPLETING,CONFIGURING 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  # slurmd and slurmctld each take ~2 s to exit after SIGTERM: stop them in
  # parallel, then munged (which they use until the end)
  stop_pidfile "$SLURMD_PID" slurmd &
  stop_pidfile "$CTLD_PID" slurmctld &
  wait
  stop_pidfile "$MPID" munged
  rm -f "$SOCK" "$SOCK.lock"
  log "stopped cluster in $DIR"
}

do_status() {
  export SLURM_CONF="$CONF"
  local n
  for n in munged:"$MPID" slurmctld:"$CTLD_PID" slurmd:"$SLURMD_PID"; do
    if pid_alive "${n#*:}"; then echo "${n%%:*}: running (pid $(cat "${n#*:}"))"
    else echo "${n%%:*}: not running"; fi
  done
  sinfo 2>&1 || true
  squeue 2>&1 || true
}

case "$CMD" in
  start)  do_start ;;
  stop)   do_stop ;;
  status) do_status ;;
  env)    echo "export SLURM_CONF=$CONF" ;;
  *)      usage ;;
esac
