#!/usr/bin/env bash
# A private Docker daemon for tests and CI (Debian's docker.io), nothing system-wide:
#   containers/ci/dockerd.sh start DIR   # prints: export DOCKER_HOST=unix://DIR/docker.sock
#   containers/ci/dockerd.sh stop DIR    # stops exactly that daemon, by its PID file
# Image layers live in DATA_ROOT (default DIR/data), so a persistent DATA_ROOT caches builds
# between runs on the same machine. No bridge and no iptables: the host's network is left
# alone; containers use --network host or user-defined networks.
set -euo pipefail

cmd="${1:?usage: dockerd.sh start|stop DIR}"
DIR="$(mkdir -p "${2:?usage: dockerd.sh start|stop DIR}" && cd "$2" && pwd)"
DATA_ROOT="${DATA_ROOT:-$DIR/data}"

case "$cmd" in
  start)
    if ! command -v dockerd >/dev/null; then
      echo "[dockerd] installing docker.io" >&2
      # one apt at a time: other test workers may be installing their packages now
      DEBIAN_FRONTEND=noninteractive flock /tmp/facegan-apt.lock apt-get install -y -q \
        --no-install-recommends docker.io >/dev/null
    fi
    mkdir -p "$DATA_ROOT" "$DIR/exec"
    dockerd --storage-driver=overlay2 --bridge=none --iptables=false \
      --data-root "$DATA_ROOT" --exec-root "$DIR/exec" -H "unix://$DIR/docker.sock" \
      --pidfile "$DIR/docker.pid" >>"$DIR/dockerd.log" 2>&1 &
    for _ in $(seq 150); do
      DOCKER_HOST="unix://$DIR/docker.sock" /usr/bin/docker version >/dev/null 2>&1 && {
        echo "export DOCKER_HOST=unix://$DIR/docker.sock"; exit 0; }
      sleep 0.2
    done
    echo "[dockerd] did not start: see $DIR/dockerd.log" >&2
    exit 1 ;;
  stop)
    if [[ -s "$DIR/docker.pid" ]]; then
      pid="$(cat "$DIR/docker.pid")"
      if kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    # mounts the daemon left under DIR (network namespaces, overlays), deepest first
    awk -v dir="$DIR/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r |
      xargs -r -n1 umount -l 2>/dev/null || true ;;
  *) echo "usage: dockerd.sh start|stop DIR" >&2; exit 2 ;;
esac
