# shellcheck shell=bash
# Shared by the facegan-hpc sbatch scripts (sourced; not a job script itself).
#
# sbatch runs a copy of the job script from Slurm's spool directory, so scripts find the project
# through FACEGAN_ROOT (set by `python -m jobs plan/submit`, else the submit directory).

FACEGAN_ROOT="${FACEGAN_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
FACEGAN_PYTHON="${FACEGAN_PYTHON:-$FACEGAN_ROOT/.venv/bin/python}"
export FACEGAN_ROOT PYTHONPATH="$FACEGAN_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Optional container prefix from the spec's resources.container (set by `python -m jobs plan`),
# e.g. "apptainer exec --nv -B /data /images/facegan.sif": only the job's own command runs
# inside it; sbatch, scontrol and srun stay on the host.
# shellcheck disable=SC2034  # used by the sbatch scripts that source this file
read -r -a CONTAINER <<<"${FACEGAN_CONTAINER:-}"

log() { printf '%s [%s] %s\n' "$(date '+%F %T')" "${SLURM_JOB_NAME:-facegan}" "$*"; }

# The job's own id; for an array task the task id, so requeue/cancel touch only this task.
own_job_id() {
  if [[ -n "${SLURM_ARRAY_JOB_ID:-}" && -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  else
    echo "${SLURM_JOB_ID:?not running under Slurm}"
  fi
}


# Start one process per Slurm task: plain for a single task, else srun with PMIx so an MPI
# build of Horovod sees every rank (Horovod ignores SLURM_* and checks its size at start), with
# the allocation's CPUs per rank (srun has not inherited --cpus-per-task since Slurm 22.05).
# `exec`: run in the background (`launch_ranks ... &`), the function's subshell must become
# the process itself, or a signal meant for the job would only kill the subshell.
launch_ranks() {
  if [[ "${SLURM_NTASKS:-1}" -le 1 ]]; then
    exec "$@"
  else
    exec srun --mpi="${FACEGAN_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 \
      ${SLURM_CPUS_PER_TASK:+"--cpus-per-task=$SLURM_CPUS_PER_TASK"} "$@"
  fi
}

# What an exit code of `python -m jobs` means, for the log (the text of jobs/core/exitcodes.py's
# DESCRIPTIONS: a test checks they agree).
exit_meaning() {
  case "$1" in
    0) echo "success" ;;
    1) echo "failed with an error (see the log)" ;;
    2) echo "invalid spec or command line; nothing ran" ;;
    3) echo "cannot run here: inputs missing, disk full, ranks not joined, or no GPU" ;;
    75) echo "checkpointed after a stop signal; requeue to continue" ;;
    76) echo "no progress within the watchdog's bound; retried from the last checkpoint" ;;
    79) echo "stopped by the mode-collapse guard; do not requeue" ;;
    80) echo "stopped early by the sweep's rule; do not requeue" ;;
    *) if (("$1" > 128)); then
         echo "killed by signal $(("$1" - 128)); with several ranks srun ends the others when one exits: its 'task N: Exited with exit code' line above names the first"
       else echo "unknown"; fi ;;
  esac
}

# Run CMD in the background so this batch shell can take Slurm's early walltime signal
# (--signal=B:USR1@lead), pass it on to the training — which checkpoints and exits 75 — and
# then requeue this job (only this array task) up to FACEGAN_MAX_REQUEUES restarts. On SIGTERM
# (scancel, preemption, `scontrol requeue`) the training also checkpoints, but Slurm decides
# what happens next, so this script does not requeue. A job that finished, failed, or that
# the mode-collapse guard (exit 79) or a sweep's early stopping (exit 80) stopped is never
# requeued.
#
# A job the stall watchdog ended (exit 76 from the rank that saw it, but srun may report the
# killed peer's status instead) is retried when its run's 'stall' event says so: STALL_CHECK,
# set by the script to `python -m jobs stalled SPEC ...`, prints "retry NODES" (or "no"), and
# the retry leaves NODES out (requeue_excluding).
STALL_CHECK=()
run_requeueable() {
  local restarts="${SLURM_RESTART_COUNT:-0}" max="${FACEGAN_MAX_REQUEUES:-10}" child code
  stop_signal=""
  log "job $(own_job_id) start: restart ${restarts} (requeue limit ${max})"
  "$@" &
  child=$!
  # shellcheck disable=SC2064  # expand $child now: the traps must signal this child
  trap "stop_signal=USR1; log 'walltime signal: asking the job to checkpoint'; kill -USR1 $child 2>/dev/null || true" USR1
  # shellcheck disable=SC2064
  trap "stop_signal=TERM; log 'SIGTERM: asking the job to checkpoint'; kill -TERM $child 2>/dev/null || true" TERM
  while true; do
    code=0
    wait "$child" || code=$?
    kill -0 "$child" 2>/dev/null || break  # wait returned for a trap: the job still runs
  done
  trap - USR1 TERM
  if [[ "$stop_signal" == USR1 && "$code" -gt 128 ]]; then
    log "the job died of the walltime signal before it could checkpoint (exit $code)"
    code=75  # it resumes from its last checkpoint: requeue as usual
  fi
  case "$code" in
    0 | 2 | 75 | 79 | 80) ;;
    *) if ((${#STALL_CHECK[@]})) && stalled_retry "$code" "$restarts"; then return 0; fi ;;
  esac
  case "$code" in
    0) log "job finished" ;;
    75)
      if [[ "$stop_signal" == TERM ]]; then
        log "checkpointed after SIGTERM; Slurm decides whether the job runs again"
      elif ((restarts < max)); then
        log "checkpointed; requeueing $(own_job_id) (restart $((restarts + 1)))"
        scontrol requeue "$(own_job_id)"
        return 0
      else
        log "checkpointed, but the requeue limit ${max} is reached: not requeueing"
      fi ;;
    79) log "stopped by the mode-collapse guard: not requeueing" ;;
    80) log "stopped early by the sweep's rule: not requeueing" ;;
    *) log "job failed with exit code ${code} ($(exit_meaning "$code")): not requeued" ;;
  esac
  return "$code"
}

# After a failed run: ask the run's record (STALL_CHECK) whether the stall watchdog ended it
# and whether it is retried; if so, requeue it leaving out the node the record named.
stalled_retry() {
  local code="$1" restarts="$2" verdict
  verdict=$(FACEGAN_PARTITION_NODES="$(partition_nodes)" "${STALL_CHECK[@]}") || verdict=no
  [[ "$verdict" == retry\ * ]] || return 1
  log "the stall watchdog ended the job (exit ${code}); requeueing $(own_job_id) (restart $((restarts + 1)))"
  requeue_excluding "$(own_job_id)" "${verdict#retry }"
}

# The nodes of this job's partition, for the stall retry's bound (a container has no sinfo).
partition_nodes() {
  sinfo --noheader --Node --format=%N ${SLURM_JOB_PARTITION:+"--partition=$SLURM_JOB_PARTITION"} \
    2>/dev/null | sort -u | tr '\n' ' ' || true
}

# Requeue job ID (an array task as ARRAY_TASK) leaving out NODES (comma-separated; - for
# none). Slurm refuses to change a running job's excluded nodes, so the job is held as it is
# requeued, changed, and released. The requeue sends this job's processes SIGTERM: ignored
# from here on (scontrol inherits that), or the sequence could stop with the job held.
requeue_excluding() {
  local id="$1" nodes="$2" before
  trap '' TERM
  if [[ "$nodes" == - ]]; then
    scontrol requeue "$id"
    return
  fi
  log "leaving out ${nodes} on the retry"
  # the job's own --exclude stays: the new list is added to it
  before=$(scontrol show job -o "$id" 2>/dev/null | tr ' ' '\n' | sed -n 's/^ExcNodeList=//p')
  [[ -z "$before" || "$before" == "(null)" ]] || nodes="${before},${nodes}"
  if ! { scontrol requeuehold "$id" && scontrol update JobId="$id" ExcNodeList="$nodes"; }; then
    log "could not leave out ${nodes}: the retry may land there again"
  fi
  scontrol release "$id"
}
