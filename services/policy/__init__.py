"""The policy service: generate candidates, fine-tune the policy (GRPO/RLOO/DPO with LoRA), evaluate versions."""
