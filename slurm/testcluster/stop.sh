#!/usr/bin/env bash
# Stop the daemons that slurm/testcluster/start.sh DIR started — by their PID files, and only
# those — newest first, then wait until they are gone; then remove the network namespaces it
# made (--nodes N > 1). Files in DIR are kept (logs, database).
set -uo pipefail

DIR="$(cd "${1:?usage: stop.sh DIR}" && pwd)"

gone() {  # PID 1 here reaps late: a zombie counts as gone
  [[ ! -e "/proc/$1" ]] || [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == Z ]]
}

# The jobs first: their processes (slurmstepd, srun, the ranks) outlive the daemons below, as
# orphans holding their memory, so cancel what the controller still knows and give its slurmd
# a few seconds to end them.
if [[ -s "$DIR/run/slurmctld.pid" ]]; then
  export SLURM_CONF="$DIR/etc/slurm.conf" PATH="$DIR/bin:$PATH"
  timeout 20 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  for _ in $(seq 50); do
    [[ -z "$(timeout 5 squeue --noheader --format=%i 2>/dev/null)" ]] && break
    sleep 0.2
  done
fi

shopt -s nullglob
for pidfile in "$DIR"/run/slurmd*.pid "$DIR"/run/{slurmctld,slurmdbd,mariadbd,munged}.pid; do
  [[ -s "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || { rm -f "$pidfile"; continue; }
  for _ in $(seq 100); do
    gone "$pid" && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
done
if [[ -s "$DIR/run/netns" ]]; then
  while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$DIR/run/netns"
  rm -f "$DIR/run/netns"
fi
echo "[testcluster] stopped $DIR" >&2
