#!/usr/bin/env bash
# A CUDA home made of pip's CUDA toolchain wheels (containers/cuda-toolkit.txt): what the GPU
# image compiles Horovod's NCCL operations with, and the suite's stand-in for `module load
# cuda`. One recipe for both (the Dockerfile and tests/helpers/gpu_flavour.py call it):
#
#   containers/cuda-toolkit.sh DEST     # prints the CUDA home (DEST/nvidia/cu13); PYTHON=...
#
# The wheels alone are not a CUDA home that CMake's FindCUDAToolkit (Horovod's build) accepts:
# they ship lib/libcudart.so.13 but no unversioned libcudart.so ("Could NOT find CUDAToolkit
# (missing: CUDA_CUDART)"), and nvcc looks for lib64. Both links are made here.
#
# DEST is built in a scratch folder beside it (DEST.tmp.*) and renamed into place when
# complete, so a killed install never leaves a DEST that looks usable; a complete DEST is
# reused. One install at a time per DEST (a lock beside it, DEST.lock): whoever holds it
# removes the scratch folders a killed install left. A DEST this script did not make (a
# real CUDA from `module load cuda`) is never written to.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$(realpath -m "${1:?usage: cuda-toolkit.sh DEST (prints the CUDA home)}")"
python="${PYTHON:-python3}"
marker=".facegan-cuda-toolkit"  # holds the requirement list it was made from

cuda_home_in() {  # the folder whose bin/ holds nvcc
  local nvcc
  nvcc="$(find "$1" -path '*/bin/nvcc' -type f | head -n1)"
  [[ -n "$nvcc" ]] || { echo "[cuda-toolkit] error: no bin/nvcc in $1" >&2; return 1; }
  dirname "$(dirname "$nvcc")"
}

if [[ -e "$dest" && ! -f "$dest/$marker" ]]; then
  echo "[cuda-toolkit] error: $dest exists and was not made by this script; not touching" \
    "it (give a new folder)" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
exec 9>>"$dest.lock"
flock 9
for stale in "$dest".tmp.*; do  # under the lock: no install is writing them
  if [[ -d "$stale" && -O "$stale" ]]; then rm -rf "$stale" || true; fi
done
if [[ -e "$dest" ]]; then  # made by this script (checked above): reused, or remade
  if cmp -s "$dest/$marker" "$here/cuda-toolkit.txt"; then cuda_home_in "$dest"; exit 0; fi
  echo "[cuda-toolkit] $dest was made from another cuda-toolkit.txt: remaking it" >&2
fi

scratch="$(mktemp -d "$dest.tmp.XXXXXX")"
chmod "$(umask -S)" "$scratch"  # mktemp's 0700 would keep a shared toolkit to its maker
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP
PIP_ROOT_USER_ACTION=ignore "$python" -m pip install -q --disable-pip-version-check \
  --no-deps --target "$scratch" -r "$here/cuda-toolkit.txt" >&2
home="$(cuda_home_in "$scratch")"
[[ -e "$home/lib64" ]] || ln -s lib "$home/lib64"  # the CUDA home layout nvcc expects
runtime="$(cd "$home/lib" && compgen -G 'libcudart.so.[0-9]*' | sort -V | head -n1)" || {
  echo "[cuda-toolkit] error: no libcudart.so.N in $home/lib" >&2; exit 1; }
[[ -e "$home/lib/libcudart.so" ]] || ln -s "$runtime" "$home/lib/libcudart.so"
"$home/bin/nvcc" --version >/dev/null
cp "$here/cuda-toolkit.txt" "$scratch/$marker"
rm -rf "$dest"
mv -T "$scratch" "$dest"
cuda_home_in "$dest"
