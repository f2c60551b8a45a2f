#!/usr/bin/env bash
# The Docker route of one Slurm task (resources.container.runtime: docker):
#   docker-task.sh [--gpus] DOCKER_RUN_OPTIONS... IMAGE COMMAND...
# `docker run` with what Slurm gave this task, worked out on the node when the task starts
# (python -m jobs plan/submit run elsewhere, before any GPU is allocated):
# - --gpus: only the GPUs in the task's CUDA_VISIBLE_DEVICES (`--gpus all` would take every
#   GPU of a shared node), renumbered from 0 inside; none given is exit 3 with one line;
# - every SLURM_* variable (the job id, restart count, CPUs; the container inherits none);
# - the host's IPC namespace, which NCCL's shared-memory transport needs.
# `exec`: the Docker client replaces this shell and passes the job's signals on.
set -euo pipefail

NOT_RUNNABLE=3  # jobs/core/exitcodes.py (a test checks they agree)

gpus=()
if [[ "${1:-}" == --gpus ]]; then
  shift
  visible="${CUDA_VISIBLE_DEVICES:-}"
  if [[ -z "$visible" || "$visible" == NoDevFiles || "$visible" == -1 ]]; then
    echo "docker-task.sh: $(hostname): the job asks for GPUs but Slurm gave this task none" \
      "(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}): ask for them with --gres=gpu:N" \
      "(resources.gpus_per_node)" >&2
    exit "$NOT_RUNNABLE"
  fi
  IFS=, read -r -a devices <<<"$visible"
  inside="$(seq -s, 0 $((${#devices[@]} - 1)))"
  gpus=(--gpus "\"device=$visible\"" -e "CUDA_VISIBLE_DEVICES=$inside")
fi

slurm=()
while IFS= read -r name; do
  slurm+=(-e "$name")
done < <(compgen -e | grep -E '^SLURM_' || true)

exec docker run --ipc=host "${gpus[@]}" "${slurm[@]}" "$@"
