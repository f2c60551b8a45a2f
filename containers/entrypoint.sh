#!/usr/bin/env bash
# The image's entry point (Docker ENTRYPOINT after tini, Apptainer %runscript):
#   <image> validate|plan|run|submit|status|summary|schema ...   -> python -m jobs ...
#   <image> preprocess fixture DIR                               -> python -m preprocess ...
#   <image> horovodrun|mpirun|python|bash|sh ...                  -> that program
# Programs replace this shell (exec), so signals reach them directly.
set -euo pipefail

case "${1:-help}" in
  horovodrun | mpirun | python | python3 | bash | sh | pytest) exec "$@" ;;
  preprocess) shift; exec python -m preprocess "$@" ;;
  help | -h | --help) exec python -m jobs --help ;;
  *) exec python -m jobs "$@" ;;
esac
