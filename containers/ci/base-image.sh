#!/usr/bin/env bash
# Make a Debian 12 base image without a registry: debootstrap a minimal bookworm and import it.
#   containers/ci/base-image.sh local/bookworm:ci [ROOTFS_DIR]
# This machine's extra CA certificates (/usr/local/share/ca-certificates) are copied into the
# root filesystem so apt and pip inside `docker build` trust a TLS-intercepting proxy; the
# Dockerfile itself never adds certificates. Uses $DOCKER_HOST.
set -euo pipefail

tag="${1:?usage: base-image.sh TAG [ROOTFS_DIR]}"
rootfs="${2:-$(mktemp -d)/rootfs}"
docker=(/usr/bin/docker)
[[ -x "${docker[0]}" ]] || docker=(docker)

if "${docker[@]}" image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null ||
  DEBIAN_FRONTEND=noninteractive flock /tmp/facegan-apt.lock \
    apt-get install -y -q --no-install-recommends debootstrap >/dev/null
if [[ ! -x "$rootfs/bin/bash" ]]; then
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
fi
mkdir -p "$rootfs/usr/local/share/ca-certificates"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
fi
tar -C "$rootfs" -c . | "${docker[@]}" import - "$tag" >/dev/null
echo "[base-image] $tag from $rootfs" >&2
