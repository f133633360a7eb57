"""`rlhf-loop`: one console script over the project's Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

AUTH_TOKEN_ENV = "RLHF_LOOP_AUTH_TOKEN"


def _auth_token(args: argparse.Namespace) -> str | None:
    """The token from --auth-token-file or $RLHF_LOOP_AUTH_TOKEN; never from argv, which `ps` shows."""
    if args.auth_token_file:
        return Path(args.auth_token_file).read_text().strip() or None
    return os.environ.get(AUTH_TOKEN_ENV) or None


def _add_server_options(parser: argparse.ArgumentParser, port: int, metrics_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"gRPC port (default {port})")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=metrics_port,
        help=f"HTTP port for /metrics and the service's HTTP endpoints (default {metrics_port})",
    )
    parser.add_argument(
        "--auth-token-file",
        help=f"require this bearer token on every RPC but health (or set ${AUTH_TOKEN_ENV})",
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain; with --tls-key enables TLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key")
    parser.add_argument("--log-level", default="INFO")


def _server_settings(args: argparse.Namespace):
    from services.grpc_runtime import ServerSettings
    from services.structured_logging import configure_logging

    if bool(args.tls_cert) != bool(args.tls_key):
        sys.exit("--tls-cert and --tls-key go together")
    configure_logging(args.log_level)
    return ServerSettings(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        auth_token=_auth_token(args),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _serve_reward(args: argparse.Namespace) -> int:
    from services.reward.server import main
    from services.reward.service import RewardServiceConfig

    settings = _server_settings(args)
    config = RewardServiceConfig(
        registry_dir=args.registry,
        base_model=args.model,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_items_per_request=args.max_items,
        max_text_chars=args.max_text_chars,
        max_length=args.max_length,
        bucket_tokens=args.bucket_tokens,
        trust_remote_code=args.trust_remote_code,
        allow_pickle=args.allow_pickle,
    )
    main(settings, config, threads=args.threads)
    return 0


def _serve_policy(args: argparse.Namespace) -> int:
    from services.policy.server import main
    from services.policy.service import PolicyServiceConfig
    from services.policy.train_worker import REWARD_TOKEN_ENV

    settings = _server_settings(args)
    config = PolicyServiceConfig(
        registry_dir=args.registry,
        base_model=args.model,
        reward_target=args.reward_url,
        reward_token=os.environ.get(REWARD_TOKEN_ENV) or None,
        reward_tls_ca=args.reward_tls_ca,
        generation_backend=args.generation_backend,
        max_prompts=args.max_prompts,
        max_n=args.max_n,
        max_new_tokens=args.max_new_tokens,
        max_prompt_chars=args.max_prompt_chars,
        train_processes=args.train_processes,
        gold_scorer=args.gold_scorer,
        trust_remote_code=args.trust_remote_code,
    )
    main(settings, config)
    return 0


def _bench_reward(args: argparse.Namespace) -> int:
    from services.reward.bench import run_reward_benchmark

    report = run_reward_benchmark(
        model=args.model,
        clients=args.clients,
        seconds=args.seconds,
        max_batch=args.max_batch,
        bucket_tokens=args.bucket_tokens,
        max_wait_ms=args.max_wait_ms,
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["targets_met"] or not args.check else 1


def _bench_policy(args: argparse.Namespace) -> int:
    from services.policy.bench import run_policy_benchmark

    report = run_policy_benchmark(
        policy_model=args.policy_model,
        reward_model=args.reward_model,
        prompts=args.prompts,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        grpo_steps=args.grpo_steps,
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["targets_met"] or not args.check else 1


def _demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    return run_demo(model=args.model, workdir=args.workdir)


def _models(args: argparse.Namespace) -> int:
    from services.model_loading import minilm_path, smollm2_path
    from services.tiny_model import build_tiny_llama

    if args.models_command == "build-tiny":
        print(build_tiny_llama(args.dir))
    else:
        print(json.dumps({"minilm": str(minilm_path()), "smollm2": str(smollm2_path())}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf-loop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a service").add_subparsers(dest="service", required=True)
    reward = serve.add_parser("reward", help="the reward service (gRPC + OpenRLHF /get_reward)")
    _add_server_options(reward, port=50051, metrics_port=9464)
    reward.add_argument("--registry", type=Path, required=True, help="directory of reward-model versions")
    reward.add_argument(
        "--model",
        default="minilm",
        help="backbone for an empty registry: 'minilm', 'smollm2' or a local checkpoint dir (default minilm)",
    )
    reward.add_argument("--max-batch", type=int, default=32, help="items per forward pass (default 32)")
    reward.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait to fill a batch (default 5)")
    reward.add_argument("--max-queue", type=int, default=1024, help="items queued before RESOURCE_EXHAUSTED")
    reward.add_argument("--max-items", type=int, default=256, help="items per Score request")
    reward.add_argument("--max-text-chars", type=int, default=16384, help="prompt+response characters per item")
    reward.add_argument("--max-length", type=int, default=512, help="tokens per item the model sees")
    reward.add_argument(
        "--bucket-tokens",
        type=int,
        default=512,
        help="padded tokens per forward chunk (length bucketing; raise on a GPU)",
    )
    reward.add_argument("--threads", type=int, help="torch CPU threads")
    reward.add_argument("--trust-remote-code", action="store_true", help="run a checkpoint's own Python code")
    reward.add_argument("--allow-pickle", action="store_true", help="allow pickle-based weights for the backbone")
    reward.set_defaults(func=_serve_reward)

    policy = serve.add_parser("policy", help="the policy service (Generate, Train, Evaluate)")
    _add_server_options(policy, port=50052, metrics_port=9465)
    policy.add_argument("--registry", type=Path, required=True, help="directory of policy versions")
    policy.add_argument(
        "--model", default="smollm2", help="base model: 'smollm2' (default) or a local causal-LM checkpoint dir"
    )
    policy.add_argument("--reward-url", help="reward service HOST:PORT (needed by grpo, rloo and Evaluate)")
    policy.add_argument(
        "--reward-tls-ca", type=Path, help="CA certificate of a TLS reward service (token: $RLHF_LOOP_REWARD_TOKEN)"
    )
    policy.add_argument("--generation-backend", choices=["transformers", "vllm"], default="transformers")
    policy.add_argument("--train-processes", type=int, default=1, help=">1 trains under accelerate launch (DDP)")
    policy.add_argument("--gold-scorer", help="module:function(prompt, response) -> float, reported by Evaluate")
    policy.add_argument("--max-prompts", type=int, default=64, help="prompts per Generate request")
    policy.add_argument("--max-n", type=int, default=16, help="completions per prompt")
    policy.add_argument("--max-new-tokens", type=int, default=512, help="upper bound a request may ask for")
    policy.add_argument("--max-prompt-chars", type=int, default=8192)
    policy.add_argument("--trust-remote-code", action="store_true", help="run a checkpoint's own Python code")
    policy.set_defaults(func=_serve_policy)

    bench = commands.add_parser("bench", help="benchmarks that print JSON").add_subparsers(dest="bench", required=True)
    bench_reward = bench.add_parser("reward", help="reward-service throughput: gRPC vs in-process, batching")
    bench_reward.add_argument("--model", default="minilm")
    bench_reward.add_argument("--clients", type=int, default=32)
    bench_reward.add_argument("--seconds", type=float, default=10.0, help="measuring time per phase")
    bench_reward.add_argument("--max-batch", type=int, default=32)
    bench_reward.add_argument("--bucket-tokens", type=int, default=512)
    bench_reward.add_argument("--max-wait-ms", type=float, default=5.0)
    bench_reward.add_argument("--json", action="store_true", help="one-line JSON")
    bench_reward.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    bench_reward.set_defaults(func=_bench_reward)

    bench_policy = bench.add_parser("policy", help="policy service: Generate and GRPO vs in-process, peak RSS")
    bench_policy.add_argument("--policy-model", default="smollm2", help="'smollm2' or a checkpoint dir")
    bench_policy.add_argument("--reward-model", default="minilm", help="'minilm' or a checkpoint dir")
    bench_policy.add_argument("--prompts", type=int, default=4)
    bench_policy.add_argument("--n", type=int, default=4, help="completions per prompt (GRPO group size)")
    bench_policy.add_argument("--max-new-tokens", type=int, default=32)
    bench_policy.add_argument("--grpo-steps", type=int, default=4)
    bench_policy.add_argument("--json", action="store_true", help="one-line JSON")
    bench_policy.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    bench_policy.set_defaults(func=_bench_policy)

    demo = commands.add_parser("demo", help="the main job on embedded defaults, offline")
    demo.add_argument("--model", default="minilm")
    demo.add_argument("--workdir", type=Path, help="where registries go (default: a temporary directory)")
    demo.set_defaults(func=_demo)

    models = commands.add_parser("models", help="embedded and test models").add_subparsers(
        dest="models_command", required=True
    )
    tiny = models.add_parser("build-tiny", help="write a tiny random Llama + tokenizer (for tests)")
    tiny.add_argument("dir", type=Path)
    tiny.set_defaults(func=_models)
    prepare = models.add_parser("prepare", help="locate the embedded models, converting SmolLM2 once into the cache")
    prepare.set_defaults(func=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Models are only ever loaded from local directories: never let a typo reach a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
