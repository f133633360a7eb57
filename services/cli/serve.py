"""`rlhf-loop serve reward|policy|backend`: run a service in the foreground."""

from __future__ import annotations

import argparse
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from services.cli.options import add_labelstudio_options, basic_auth, labelstudio_login
from services.cli.train import add_launch_options, launch_spec
from services.core.env import AUTH_TOKEN_ENV, BACKEND_PASSWORD_ENV, REWARD_TOKEN_ENV, WEBHOOK_SECRET_ENV

if TYPE_CHECKING:
    from services.rpc.server_runtime import ServerSettings


def register(commands: argparse._SubParsersAction) -> None:
    """Add `serve` and its three services."""
    serve = commands.add_parser("serve", help="run a service").add_subparsers(dest="service", required=True)
    _add_reward(serve.add_parser("reward", help="the reward service (gRPC + OpenRLHF /get_reward)"))
    _add_policy(serve.add_parser("policy", help="the policy service (Generate, Train, Evaluate)"))
    _add_backend(serve.add_parser("backend", help="the Label Studio ML backend (HTTP)"))


def _add_server_options(parser: argparse.ArgumentParser, port: int, metrics_port: int) -> None:
    """What the two gRPC services share: where to listen, auth, TLS, logging."""
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


def _require_server_extras(role: str) -> None:
    """Exit with one line, not an import traceback, when the `server` extra is not installed.

    The base install is only the clients (`rlhf-loop[client]`); every role needs torch, transformers and the rest.
    """
    try:
        requirements = metadata.requires("rlhf-loop") or []
    except metadata.PackageNotFoundError:
        return  # run from a source tree that was never installed: no list to check against
    missing = []
    for requirement in requirements:
        if 'extra == "server"' in requirement:
            name = re.match(r"[A-Za-z0-9._-]+", requirement).group()
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                missing.append(name)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        sys.exit(
            f"rlhf-loop serve {role}: {', '.join(missing[:3])}{more} not installed; "
            "a service needs the server extras: pip install 'rlhf-loop[server]'"
        )


def _auth_token(args: argparse.Namespace) -> str | None:
    """The token from --auth-token-file or $RLHF_LOOP_AUTH_TOKEN; never from argv, which `ps` shows."""
    if args.auth_token_file:
        return Path(args.auth_token_file).read_text().strip() or None
    return os.environ.get(AUTH_TOKEN_ENV) or None


def _server_settings(args: argparse.Namespace) -> ServerSettings:
    """The server options as settings, with logging configured."""
    from services.core.structured_logging import configure_logging
    from services.rpc.server_runtime import ServerSettings

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


def _add_reward(reward: argparse.ArgumentParser) -> None:
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
    reward.add_argument("--threads", type=int, help="torch CPU threads (default: all cores, shared out by --processes)")
    reward.add_argument(
        "--processes",
        type=int,
        default=1,
        help="serving processes sharing the gRPC port (SO_REUSEPORT); process i serves HTTP on --metrics-port + i",
    )
    reward.add_argument(
        "--batch-wait",
        choices=["adaptive", "fixed"],
        default="adaptive",
        help="adaptive: hold a batch only while answered callers are expected back; fixed: --max-wait-ms always",
    )
    reward.add_argument("--null-model", action="store_true", help=argparse.SUPPRESS)  # `bench reward`'s stand-in
    reward.add_argument("--trust-remote-code", action="store_true", help="run a checkpoint's own Python code")
    reward.add_argument("--allow-pickle", action="store_true", help="allow pickle-based weights for the backbone")
    replicas = reward.add_argument_group(
        "replicas", "several reward processes on one --registry (a shared volume) serve one active version"
    )
    replicas.add_argument("--replica-id", default="", help="this replica's name (default <hostname>-<pid>)")
    replicas.add_argument(
        "--follow-interval", type=float, default=0.5, help="seconds between checks of the active version (0.5)"
    )
    replicas.add_argument(
        "--replica-stale-after",
        type=float,
        default=5.0,
        help="a replica silent this many seconds is not waited for by a Promote (default 5)",
    )
    replicas.add_argument(
        "--promote-sync-timeout",
        type=float,
        default=120.0,
        help="longest wait of a Promote or Rollback for the other replicas to serve it (default 120 s)",
    )
    reward.set_defaults(func=_reward)


def _reward(args: argparse.Namespace) -> int:
    _require_server_extras("reward")
    from services.reward.server import main
    from services.reward.service import RewardServiceConfig

    settings = _server_settings(args)
    config = RewardServiceConfig(
        registry_dir=args.registry,
        base_model=args.model,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        batch_wait=args.batch_wait,
        max_queue=args.max_queue,
        max_items_per_request=args.max_items,
        max_text_chars=args.max_text_chars,
        max_length=args.max_length,
        bucket_tokens=args.bucket_tokens,
        trust_remote_code=args.trust_remote_code,
        allow_pickle=args.allow_pickle,
        replica_id=args.replica_id,
        follow_interval_s=args.follow_interval,
        replica_stale_s=args.replica_stale_after,
        promote_sync_timeout_s=args.promote_sync_timeout,
    )
    try:
        config.validate()
    except ValueError as error:
        sys.exit(
            f"rlhf-loop serve reward: {error} (--follow-interval > 0, --replica-stale-after > --follow-interval, "
            "--promote-sync-timeout >= 0)"
        )
    main(settings, config, threads=args.threads, processes=args.processes, null_model=args.null_model)
    return 0


def _add_policy(policy: argparse.ArgumentParser) -> None:
    _add_server_options(policy, port=50052, metrics_port=9465)
    policy.add_argument("--registry", type=Path, required=True, help="directory of policy versions")
    policy.add_argument(
        "--model", default="smollm2", help="base model: 'smollm2' (default) or a local causal-LM checkpoint dir"
    )
    policy.add_argument(
        "--reward-url",
        help="reward service HOST:PORT, or a gRPC target over replicas such as dns:///NAME:PORT "
        "(needed by grpo, rloo and Evaluate)",
    )
    policy.add_argument(
        "--reward-tls-ca", type=Path, help=f"CA certificate of a TLS reward service (token: ${REWARD_TOKEN_ENV})"
    )
    policy.add_argument("--generation-backend", choices=["transformers", "vllm"], default="transformers")
    training = policy.add_argument_group(
        "training", "more than one process, on this machine or more (the others run `rlhf-loop train node`)"
    )
    add_launch_options(training, prefix="train-")
    training.add_argument(
        "--train-strategy",
        choices=["ddp", "fsdp"],
        default="ddp",
        help="ddp: a full model copy per process (default); fsdp: the model sharded across them (GPUs only)",
    )
    policy.add_argument("--gold-scorer", help="module:function(prompt, response) -> float, reported by Evaluate")
    policy.add_argument("--max-prompts", type=int, default=64, help="prompts per Generate request")
    policy.add_argument("--max-n", type=int, default=16, help="completions per prompt")
    policy.add_argument("--max-new-tokens", type=int, default=512, help="upper bound a request may ask for")
    policy.add_argument("--max-prompt-chars", type=int, default=8192)
    policy.add_argument("--trust-remote-code", action="store_true", help="run a checkpoint's own Python code")
    policy.set_defaults(func=_policy)


def _policy(args: argparse.Namespace) -> int:
    _require_server_extras("policy")
    from services.policy.server import main
    from services.policy.service import PolicyServiceConfig

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
        train_launch=launch_spec(args, prefix="train-", strategy=args.train_strategy),
        gold_scorer=args.gold_scorer,
        trust_remote_code=args.trust_remote_code,
    )
    main(settings, config)
    return 0


def _add_backend(backend: argparse.ArgumentParser) -> None:
    backend.add_argument("--host", default="127.0.0.1")
    backend.add_argument("--port", type=int, default=9091)
    backend.add_argument("--store", default="sqlite:///preferences.db", help="SQLAlchemy URL of the preference store")
    backend.add_argument(
        "--reward-url",
        default="127.0.0.1:50051",
        help="reward service HOST:PORT, or a gRPC target over replicas such as dns:///NAME:PORT",
    )
    backend.add_argument("--policy-url", help="policy service HOST:PORT: new prompt-only tasks get candidates")
    backend.add_argument("--candidates", type=int, default=4, help="candidates per task (Pairwise: 2)")
    backend.add_argument("--max-new-tokens", type=int, default=64)
    backend.add_argument(
        "--basic-auth-user",
        help=f"require basic auth (password in ${BACKEND_PASSWORD_ENV}); webhooks may also need a shared "
        f"secret: set ${WEBHOOK_SECRET_ENV} here and for `project init`",
    )
    backend.add_argument("--log-level", default="INFO")
    add_labelstudio_options(backend)
    backend.set_defaults(func=_backend)


def _backend(args: argparse.Namespace) -> int:
    _require_server_extras("backend")
    from labelstudio_backend.app import BackendConfig, main
    from services.core.structured_logging import configure_logging

    configure_logging(args.log_level)
    url, token = (None, None)
    # Label Studio's API writes candidates into new tasks, and reads each project's pre-rank share and the
    # pre-ranking an annotation started from; without it rankings are stored all the same.
    if args.policy_url or args.labelstudio_url:
        url, token = labelstudio_login(args)
    config = BackendConfig(
        store_url=args.store,
        reward_target=args.reward_url,
        reward_token=os.environ.get(REWARD_TOKEN_ENV) or None,
        basic_auth=basic_auth(args),
        webhook_secret=os.environ.get(WEBHOOK_SECRET_ENV) or None,
        candidates=args.candidates,
        labelstudio_url=url,
        labelstudio_token=token,
        policy_target=args.policy_url,
        max_new_tokens=args.max_new_tokens,
    )
    main(config, args.host, args.port)
    return 0
