#!/usr/bin/env bash
# Stop the daemons that slurm/testcluster/start.sh DIR started — by their PID files, and only
# those — newest first, then wait until they are gone. Files in DIR are kept (logs, database).
set -uo pipefail

DIR="$(cd "${1:?usage: stop.sh DIR}" && pwd)"

for name in slurmd slurmctld slurmdbd mariadbd munged; do
  pidfile="$DIR/run/$name.pid"
  [[ -s "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || { rm -f "$pidfile"; continue; }
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
done
echo "[testcluster] stopped $DIR" >&2
