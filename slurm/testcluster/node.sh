#!/usr/bin/env bash
# Start or stop one node's slurmd of a multi-node test cluster (start.sh DIR --nodes N):
#   node.sh DIR nodeK start   # in the node's network namespace, with its hostname and its own
#                             # directory bound on TmpFS (what start.sh does for each node)
#   node.sh DIR nodeK stop    # SIGTERM to its slurmd, by PID file; its running jobs go on
# bench/chaos.py stops and restarts a node's slurmd under running jobs with it.
set -euo pipefail

DIR="$(cd "${1:?usage: node.sh DIR nodeK start|stop}" && pwd)"
NODE="${2:?usage: node.sh DIR nodeK start|stop}"
ID="$(printf %s "$DIR" | md5sum | cut -c1-6)"  # as start.sh names the namespaces
export SLURM_CONF="$DIR/etc/slurm.conf"

case "${3:?usage: node.sh DIR nodeK start|stop}" in
  start)
    mkdir -p "$DIR/tmp/$NODE" "$DIR/tmpfs"
    nsenter --net="/run/netns/fg$ID-$NODE" -- unshare --uts --mount sh -c \
      "hostname $NODE && mount --bind '$DIR/tmp/$NODE' '$DIR/tmpfs' && exec slurmd -N $NODE"
    ;;
  stop)
    pidfile="$DIR/run/slurmd.$NODE.pid"
    pid="$(cat "$pidfile")"
    kill -TERM "$pid"
    for _ in $(seq 100); do
      [[ -e "/proc/$pid" ]] || break
      sleep 0.1
    done
    ;;
  *) echo "node.sh: start or stop, not $3" >&2; exit 2 ;;
esac
