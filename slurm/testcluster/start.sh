#!/usr/bin/env bash
# A private Slurm cluster in DIR, for tests and for trying the suite on a laptop: munge,
# MariaDB + slurmdbd (so sacct and submitit's polling work), slurmctld and slurmd, all started
# by hand (no systemd), all files under DIR, stopped by slurm/testcluster/stop.sh DIR.
#
#   slurm/testcluster/start.sh /tmp/cluster [--nodes N]
#   source /tmp/cluster/env.sh && sbatch ...
#   slurm/testcluster/stop.sh /tmp/cluster
#
# --nodes 1 (the default): one node, this machine's hostname, on the loopback.
# --nodes N > 1: N slurmd "nodes" node1..nodeN, each in its own network, UTS and mount
# namespace with its own hostname and address on a private bridge, and slurmctld + slurmdbd +
# MariaDB in a "head" namespace. Multi-node jobs (srun -N2, Horovod over TCP) really cross
# between them. The Slurm clients must run in the head namespace: env.sh puts DIR/bin first
# in PATH, where sbatch, srun, sacct, scancel, squeue, scontrol, sinfo... enter it themselves,
# so scripts and submitit use them unchanged.
#
# Needs root (Slurm runs jobs as root here; namespaces) and Debian's slurm-wlm, munge,
# slurmdbd, mariadb-server and iproute2, which it installs if missing (nsenter and unshare
# come with util-linux, part of every Debian).
set -euo pipefail

DIR="$(mkdir -p "${1:?usage: start.sh DIR [--nodes N]}" && cd "$1" && pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODES=1
if [[ "${2:-}" == "--nodes" ]]; then NODES="${3:?--nodes needs a number}"; fi
[[ "$NODES" =~ ^[1-9][0-9]?$ ]] || { echo "start.sh: --nodes must be 1..99" >&2; exit 2; }
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server iproute2)  # ip: --nodes
NODE="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
CLIENTS=(sbatch srun salloc sacct sacctmgr scancel squeue scontrol sinfo sstat sattach)

say() { printf '[testcluster] %s\n' "$*" >&2; }

install_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  (  # one apt at a time: clusters started side by side (parallel test workers) wait here
    flock 9
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update -q >/dev/null &&
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
  ) 9>/tmp/facegan-apt.lock
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { say "timed out waiting for $what (logs: $DIR/log)"; exit 1; }
    sleep 0.2
  done
}

# --- N > 1: namespaces, a bridge in the head, one veth and address per node -----------------
ID="$(printf %s "$DIR" | md5sum | cut -c1-6)"
# Job ids of their own: Open MPI and PMIx name their shared-memory segments and session files
# by host name and job id, and clusters side by side on one machine share /dev/shm, /tmp and
# their nodes' names. With both counting from 1, two clusters' job 2 collided: its ranks
# segfaulted or hung in their first broadcast.
FIRST_JOB_ID=$((16#${ID:0:4} * 10 + 1000))
HEAD_NS="fg$ID-head"
HEAD_ADDR=10.87.0.1
in_head() { nsenter --net="/run/netns/$HEAD_NS" -- "$@"; }
node_addr() { echo "10.87.0.$((10 + $1))"; }

make_namespaces() {
  ip netns add "$HEAD_NS"
  echo "$HEAD_NS" >"$DIR/run/netns"
  ip -n "$HEAD_NS" link set lo up
  ip -n "$HEAD_NS" link add br0 type bridge
  ip -n "$HEAD_NS" addr add "$HEAD_ADDR/24" dev br0
  ip -n "$HEAD_NS" link set br0 up
  local i ns veth
  for ((i = 1; i <= NODES; i++)); do
    ns="fg$ID-node$i" veth="fg${ID}v$i"
    ip netns add "$ns"
    echo "$ns" >>"$DIR/run/netns"
    ip link add "$veth" netns "$HEAD_NS" type veth peer name eth0 netns "$ns"
    ip -n "$HEAD_NS" link set "$veth" master br0 up
    ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

client_wrappers() {  # DIR/bin/sbatch etc.: the real client, run in the head namespace
  mkdir -p "$DIR/bin"
  local cmd
  for cmd in "${CLIENTS[@]}"; do
    printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s -- %s "$@"\n' "$HEAD_NS" \
      "$(command -v "$cmd")" >"$DIR/bin/$cmd"
    chmod +x "$DIR/bin/$cmd"
  done
}

install_packages
mkdir -p "$DIR"/{etc,run,log,spool/ctld,spool/d,mysql}
chmod 700 "$DIR/run"
RUN=()  # prefix that runs a cluster daemon where it belongs
if ((NODES > 1)); then
  [[ ! -s "$DIR/run/netns" ]] || { say "$DIR holds a running cluster: stop.sh it first"; exit 1; }
  make_namespaces
  client_wrappers
  RUN=(in_head)
  NODE="head"
fi

# --- munge: a private key and socket ---------------------------------------------------------
if [[ ! -f "$DIR/etc/munge.key" ]]; then
  dd if=/dev/urandom of="$DIR/etc/munge.key" bs=1024 count=1 status=none
  chmod 400 "$DIR/etc/munge.key"
fi
MUNGE_SOCKET="$DIR/run/munge.socket"
munged --force --socket="$MUNGE_SOCKET" --key-file="$DIR/etc/munge.key" \
  --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
  --seed-file="$DIR/run/munged.seed"
wait_for 10 munge munge --socket="$MUNGE_SOCKET" --string=ok

# --- MariaDB for slurmdbd ----------------------------------------------------------------------
DB_PORT="$(free_port)"
DB_PASS="facegan-$RANDOM$RANDOM"
# MariaDB's temporary tables go in the cluster's own folder: clusters started in the same
# second (parallel test workers) collided on their names in /tmp and failed to install
mkdir -p "$DIR/run/dbtmp"
if [[ ! -d "$DIR/mysql/mysql" ]]; then
  TMPDIR="$DIR/run/dbtmp" mysql_install_db --no-defaults --datadir="$DIR/mysql" --user=root \
    --auth-root-authentication-method=socket >"$DIR/log/mysql_install.log" 2>&1
fi
"${RUN[@]}" mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --bind-address=127.0.0.1 \
  --tmpdir="$DIR/run/dbtmp" \
  --port="$DB_PORT" --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mariadbd.pid" \
  --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=64M \
  >>"$DIR/log/mariadb.log" 2>&1 &
wait_for 30 MariaDB mysql --no-defaults --socket="$DIR/run/mysqld.sock" -uroot -e "select 1"
mysql --no-defaults --socket="$DIR/run/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- Slurm configuration -----------------------------------------------------------------------
if ((NODES > 1)); then  # private namespaces: Slurm's own ports are free
  CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819
else
  CTLD_PORT="$(free_port)" SLURMD_PORT="$(free_port)" DBD_PORT="$(free_port)"
fi
cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$DIR/etc/slurmdbd.conf"
if ((NODES > 1)); then  # %n: each slurmd its own spool, PID file and log
  CTLD_ADDR=$HEAD_ADDR SLURMD_NAME='slurmd.%n' TMPFS_LINE=$'\n'"TmpFS=$DIR/tmpfs" NODE_LINES=""
  for ((i = 1; i <= NODES; i++)); do
    NODE_LINES+="NodeName=node$i NodeAddr=$(node_addr "$i") CPUs=$CPUS"
    NODE_LINES+=" RealMemory=$((MEM_MB / NODES)) State=UNKNOWN"$'\n'
  done
else
  CTLD_ADDR=127.0.0.1 SLURMD_NAME=slurmd TMPFS_LINE=""
  NODE_LINES="NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN"
fi
cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=facegan
FirstJobId=$FIRST_JOB_ID
SlurmctldHost=$NODE($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start (default 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=5
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/$SLURMD_NAME
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/$SLURMD_NAME.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/$SLURMD_NAME.log$TMPFS_LINE
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SchedulerType=sched/backfill
JobRequeue=1
DependencyParameters=kill_invalid_depend
MinJobAge=3600
KillWait=10
InactiveLimit=0
ReturnToService=2
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/etc/slurm.conf"
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF" >"$DIR/env.sh"
if ((NODES > 1)); then
  # shellcheck disable=SC2016  # $PATH expands when env.sh is sourced
  printf 'export PATH=%q:"$PATH"\n' "$DIR/bin" >>"$DIR/env.sh"
fi

start_slurmds() {  # each node: its own network, hostname, and its own directory on TmpFS
  local i
  for ((i = 1; i <= NODES; i++)); do
    "$HERE/node.sh" "$DIR" "node$i" start
  done
}

all_idle() { [[ "$("${RUN[@]}" sinfo -h -N -o %T | grep -cx idle)" -ge "$NODES" ]]; }

# --- daemons -----------------------------------------------------------------------------------
"${RUN[@]}" slurmdbd
wait_for 30 slurmdbd "${RUN[@]}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$DBD_PORT"
if ((NODES > 1)); then
  in_head unshare --uts sh -c 'hostname head && exec slurmctld'
else
  slurmctld
fi
wait_for 30 slurmctld "${RUN[@]}" scontrol ping
if ((NODES > 1)); then start_slurmds; else slurmd -N "$NODE"; fi
wait_for 60 "$NODES node(s) idle" all_idle
"${RUN[@]}" sacctmgr -i add cluster facegan >/dev/null 2>&1 || true
say "cluster up in $DIR ($NODES node(s), $CPUS CPUs, $MEM_MB MB)"
echo "source $DIR/env.sh"
