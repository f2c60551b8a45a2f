#!/usr/bin/env bash
# A private single-node Slurm cluster in DIR, for tests and for trying the suite on a laptop:
# munge, MariaDB + slurmdbd (so sacct and submitit's polling work), slurmctld and slurmd, all
# started by hand (no systemd), all files under DIR, stopped by slurm/testcluster/stop.sh DIR.
#
#   slurm/testcluster/start.sh /tmp/cluster     # prints: export SLURM_CONF=/tmp/cluster/etc/slurm.conf
#   source /tmp/cluster/env.sh && sbatch ...
#   slurm/testcluster/stop.sh /tmp/cluster
#
# Needs root (Slurm runs jobs as root here) and Debian's slurm-wlm, munge, slurmdbd and
# mariadb-server, which it installs if missing.
set -euo pipefail

DIR="$(mkdir -p "${1:?usage: start.sh DIR}" && cd "$1" && pwd)"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
NODE="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"

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
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null &&
      apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
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

install_packages
mkdir -p "$DIR"/{etc,run,log,spool/ctld,spool/d,mysql}
chmod 700 "$DIR/run"

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
if [[ ! -d "$DIR/mysql/mysql" ]]; then
  mysql_install_db --no-defaults --datadir="$DIR/mysql" --user=root \
    --auth-root-authentication-method=socket >"$DIR/log/mysql_install.log" 2>&1
fi
mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --bind-address=127.0.0.1 \
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
CTLD_PORT="$(free_port)"
SLURMD_PORT="$(free_port)"
DBD_PORT="$(free_port)"
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
cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=facegan
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start (default 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=5
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
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
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/etc/slurm.conf"
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF" >"$DIR/env.sh"

# --- daemons -----------------------------------------------------------------------------------
slurmdbd
wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$DBD_PORT"
slurmctld
wait_for 30 slurmctld scontrol ping
slurmd -N "$NODE"
wait_for 60 "node $NODE idle" bash -c "sinfo -h -n '$NODE' -o %T | grep -qx idle"
sacctmgr -i add cluster facegan >/dev/null 2>&1 || true
say "cluster up in $DIR (node $NODE, $CPUS CPUs, $MEM_MB MB)"
echo "export SLURM_CONF=$SLURM_CONF"
