#!/usr/bin/env bash
# The Docker route of one Slurm task (resources.container.runtime: docker):
#   docker-task.sh [--gpus] DOCKER_RUN_OPTIONS... IMAGE COMMAND...
# `docker run` with what Slurm gave this task, worked out on the node when the task starts
# (python -m jobs plan/submit run elsewhere, before any GPU is allocated):
# - --gpus: only the task's GPUs (`--gpus all` would take every GPU of a shared node), by the
#   node's own numbers: SLURM_STEP_GPUS or SLURM_JOB_GPUS, since with ConstrainDevices Slurm
#   renumbers CUDA_VISIBLE_DEVICES from 0 inside the job's cgroup while the Docker daemon
#   outside counts the node's; renumbered from 0 inside the container; a CUDA kernel cache on
#   the host (the container's home is gone with --rm); none given is exit 3 with one line;
# - every SLURM_* variable (the job id, restart count, CPUs; the container inherits none);
# - the host's IPC namespace, which NCCL's shared-memory transport needs.
# `exec`: the Docker client replaces this shell and passes the job's signals on.
set -euo pipefail

NOT_RUNNABLE=3  # jobs/core/exitcodes.py (a test checks they agree)

gpus=()
if [[ "${1:-}" == --gpus ]]; then
  shift
  visible="${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}}"
  if [[ -z "$visible" || "$visible" == NoDevFiles || "$visible" == -1 ]]; then
    echo "docker-task.sh: $(hostname): the job asks for GPUs but Slurm gave this task none" \
      "(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}): ask for them with --gres=gpu:N" \
      "(resources.gpus_per_node)" >&2
    exit "$NOT_RUNNABLE"
  fi
  IFS=, read -r -a devices <<<"$visible"
  inside="$(seq -s, 0 $((${#devices[@]} - 1)))"
  cache="${CUDA_CACHE_PATH:-${XDG_CACHE_HOME:-$HOME/.cache}/facegan-hpc/cuda}"
  mkdir -p "$cache"
  gpus=(--gpus "\"device=$visible\"" -e "CUDA_VISIBLE_DEVICES=$inside"
        -v "$cache:$cache" -e "CUDA_CACHE_PATH=$cache")
fi

slurm=()
while IFS= read -r name; do
  slurm+=(-e "$name")
done < <(compgen -e | grep -E '^SLURM_' || true)

# ${a[@]+"${a[@]}"}: an empty array under set -u, also on bash before 4.4
exec docker run --ipc=host ${gpus[@]+"${gpus[@]}"} ${slurm[@]+"${slurm[@]}"} "$@"
