#!/usr/bin/env bash
# The GPU host's check, one prepared run in a 10-minute time-box, one JSON (services/tools/gpu_check.py):
# install (offline wheels), environment, models, the policy service on vLLM training, promoting and rolling
# back a LoRA version, `bench reward` at GPU batch sizes (and with --null-model where it has that option),
# `bench policy` at GPU sizes. Each stage has its own timeout; the JSON is rewritten after every stage.
# Exit 1 when a stage failed or timed out. See deploy/README.md.
#
#   deploy/gpu_check.sh                      # on a GPU host with the project installed (make install)
#   WHEELS=dir deploy/gpu_check.sh           # offline: the project's wheels from dir, installed first
#   MODEL_CONFIG=dir deploy/gpu_check.sh     # no weights to be had: random models with the shapes of
#                                            # dir/smollm2 and dir/minilm (config + tokenizer each)
#   OUT=file TIME_BOX_S=600 deploy/gpu_check.sh   # where the JSON goes (default gpu-check.json), the box
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-check.json}
TIME_BOX_S=${TIME_BOX_S:-600}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

args=(--out "$OUT" --time-box-s "$TIME_BOX_S")
if [ -n "${WHEELS:-}" ]; then args+=(--wheels "$WHEELS"); fi
if [ -n "${MODEL_CONFIG:-}" ]; then args+=(--model-config "$MODEL_CONFIG"); fi
# The driver keeps its own time-box; this outer limit only catches a driver that itself hangs.
timeout --kill-after=10 "$((TIME_BOX_S + 30))" "$PY" -m services.tools.gpu_check "${args[@]}" "$@"
