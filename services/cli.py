"""`rlhf-loop`: one console script over the project's Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from services.core.env import AUTH_TOKEN_ENV, BACKEND_PASSWORD_ENV


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
    from services.core.env import REWARD_TOKEN_ENV
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
        train_processes=args.train_processes,
        gold_scorer=args.gold_scorer,
        trust_remote_code=args.trust_remote_code,
    )
    main(settings, config)
    return 0


def _labelstudio(args: argparse.Namespace) -> tuple[str, str]:
    """(url, token): --labelstudio-url with $RLHF_LOOP_LABELSTUDIO_TOKEN, or what `labelstudio up` saved."""
    from labelstudio_backend.labelstudio_server import load_credentials
    from services.core.env import LABELSTUDIO_TOKEN_ENV

    if args.labelstudio_url:
        token = os.environ.get(LABELSTUDIO_TOKEN_ENV)
        if not token:
            sys.exit(f"--labelstudio-url needs the API token in ${LABELSTUDIO_TOKEN_ENV}")
        return args.labelstudio_url, token
    credentials = load_credentials(args.data_dir)
    return credentials.url, credentials.token


def _basic_auth(args: argparse.Namespace) -> tuple[str, str] | None:
    if not args.basic_auth_user:
        return None
    password = os.environ.get(BACKEND_PASSWORD_ENV)
    if not password:
        sys.exit(f"--basic-auth-user needs the password in ${BACKEND_PASSWORD_ENV}")
    return args.basic_auth_user, password


def _add_labelstudio_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labelstudio-url",
        help="Label Studio URL (token in $RLHF_LOOP_LABELSTUDIO_TOKEN); default: the one `up` started",
    )
    parser.add_argument("--data-dir", type=Path, help="the data dir `labelstudio up` used (default: in the cache)")


def _labelstudio_up(args: argparse.Namespace) -> int:
    from labelstudio_backend.labelstudio_server import up

    credentials = up(port=args.port, data_dir=args.data_dir, progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps({"url": credentials.url, "username": credentials.username, "password": credentials.password,
                      "token": credentials.token}, indent=2))  # fmt: skip
    return 0


def _labelstudio_down(args: argparse.Namespace) -> int:
    from labelstudio_backend.labelstudio_server import down

    print("stopped" if down(args.data_dir) else "no Label Studio was running from that data dir")
    return 0


def _serve_backend(args: argparse.Namespace) -> int:
    from labelstudio_backend.app import BackendConfig, main
    from services.core.env import REWARD_TOKEN_ENV, WEBHOOK_SECRET_ENV
    from services.core.structured_logging import configure_logging

    configure_logging(args.log_level)
    url, token = (None, None)
    if args.policy_url:
        url, token = _labelstudio(args)
    config = BackendConfig(
        store_url=args.store,
        reward_target=args.reward_url,
        reward_token=os.environ.get(REWARD_TOKEN_ENV) or None,
        basic_auth=_basic_auth(args),
        webhook_secret=os.environ.get(WEBHOOK_SECRET_ENV) or None,
        candidates=args.candidates,
        labelstudio_url=url,
        labelstudio_token=token,
        policy_target=args.policy_url,
        max_new_tokens=args.max_new_tokens,
    )
    main(config, args.host, args.port)
    return 0


def _project_init(args: argparse.Namespace) -> int:
    from labelstudio_backend.project_setup import init_project, labelstudio_client
    from services.core.env import WEBHOOK_SECRET_ENV

    url, token = _labelstudio(args)
    setup = init_project(
        labelstudio_client(url, token),
        template=args.template,
        title=args.title,
        backend_url=args.backend_url,
        basic_auth=_basic_auth(args),
        webhook_secret=os.environ.get(WEBHOOK_SECRET_ENV) or None,
        candidates=args.candidates,
    )
    print(json.dumps(vars(setup) | {"url": f"{url}/projects/{setup.project_id}"}, indent=2))
    return 0


def _tasks_import(args: argparse.Namespace) -> int:
    from labelstudio_backend.candidates import Sampling, generate_task_data
    from labelstudio_backend.project_setup import labelstudio_client, project_candidates
    from labelstudio_backend.templates import template_of
    from services.policy.client import PolicyClient

    prompts = [json.loads(line)["prompt"] for line in args.file.read_text().splitlines() if line.strip()]
    url, token = _labelstudio(args)
    client = labelstudio_client(url, token)
    template = template_of(client.projects.get(id=args.project).label_config)
    with PolicyClient(args.policy_url, timeout_s=1800) as policy:
        k = args.candidates or project_candidates(client, args.project, default=4)
        data = generate_task_data(policy, prompts, k, template, Sampling(max_new_tokens=args.max_new_tokens))
    reply = client.projects.import_tasks(args.project, request=data, return_task_ids=True)
    print(json.dumps({"imported": len(data), "task_ids": list(reply.task_ids or [])}))
    return 0


def _sync(args: argparse.Namespace) -> int:
    from labelstudio_backend.preference_store import PreferenceStore
    from labelstudio_backend.project_setup import labelstudio_client
    from labelstudio_backend.sync import sync_project

    url, token = _labelstudio(args)
    report = sync_project(labelstudio_client(url, token), PreferenceStore(args.store), args.project)
    print(json.dumps(vars(report)))
    return 0


def _prefs_stats(args: argparse.Namespace) -> int:
    from labelstudio_backend.preference_store import PreferenceStore, pairwise_agreement

    report = pairwise_agreement(PreferenceStore(args.store).all(args.project))
    if not args.merged:
        report.pop("merged")
    print(json.dumps(report, indent=2))
    return 0


def _annotate_simulate(args: argparse.Namespace) -> int:
    from labelstudio_backend.labelstudio_server import default_data_dir
    from labelstudio_backend.project_setup import labelstudio_client
    from services.core.loader import load_function
    from services.sim.simulated_annotators import (
        calibrate_temperature,
        project_gold_groups,
        simulated_annotators,
    )

    url, token = _labelstudio(args)
    gold = load_function(args.gold, "gold scorer")
    temperature = args.temperature
    if temperature is None:  # tuned to the candidates at hand, so agreement stays on target
        groups = project_gold_groups(labelstudio_client(url, token), args.project, gold)
        temperature = calibrate_temperature(groups, args.target_agreement) if groups else 0.26
    accounts = Path(args.data_dir or default_data_dir()) / "simulated-annotators.json"
    annotators = simulated_annotators(url, token, accounts, args.annotators, temperature, args.seed)
    counts = {a.user_id: len(a.annotate(args.project, gold, args.limit)) for a in annotators}
    print(json.dumps({"temperature": temperature, "annotations_by_user": counts}))
    return 0


def _loop_run(args: argparse.Namespace) -> int:
    from services.controller.loop import RlhfLoop
    from services.controller.loop_config import LoopConfig

    loop = RlhfLoop(LoopConfig.from_toml(args.config))
    print(json.dumps(loop.setup()), file=sys.stderr)
    history = loop.execute()
    print(json.dumps([{k: v for k, v in r.items() if k != "selected"} for r in history], indent=2))
    return 0


def _loop_watch(args: argparse.Namespace) -> int:
    from services.controller.loop import RlhfLoop
    from services.controller.loop_config import LoopConfig

    loop = RlhfLoop(LoopConfig.from_toml(args.config))
    loop.watch(every_s=args.every_s)
    return 0


def _loop_report(args: argparse.Namespace) -> int:
    from services.controller.loop import RlhfLoop
    from services.controller.loop_config import LoopConfig

    report = RlhfLoop(LoopConfig.from_toml(args.config)).report(args.out, samples=args.samples)
    print(json.dumps({k: report[k] for k in ("gold_win_rate", "gold_win_rate_ci", "targets_met")}))
    print(f"report written to {args.out}/report.html", file=sys.stderr)
    return 0


def _health(args: argparse.Namespace) -> int:
    """Container health checks: gRPC health SERVING for HOST:PORT, HTTP 200 for a URL."""
    import urllib.request

    from services.rpc.client import GrpcClient

    try:
        if args.target.startswith(("http://", "https://")):
            urllib.request.urlopen(args.target, timeout=args.timeout_s).read()
        else:
            with GrpcClient(args.target, tls_ca=args.tls_ca) as client:
                client.wait_ready(timeout_s=args.timeout_s)
    except (OSError, TimeoutError) as error:
        print(f"{args.target}: not healthy ({error})", file=sys.stderr)
        return 1
    return 0


def _loop_history(args: argparse.Namespace) -> int:
    from services.controller.loop_config import LoopConfig
    from services.controller.loop_state import LoopState

    history = LoopState(LoopConfig.from_toml(args.config).state_url).history()
    if args.command_name == "status":
        history = history[-1:]
    print(json.dumps([{k: v for k, v in r.items() if k != "selected"} for r in history], indent=2))
    return 0


def _bench_reward(args: argparse.Namespace) -> int:
    from services.tools.reward_bench import run_reward_benchmark

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


def _bench_load(args: argparse.Namespace) -> int:
    from services.tools.load_bench import run_load_benchmark

    report = run_load_benchmark(args.model, args.clients, args.seconds, args.overload_seconds)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["targets_met"] or not args.check else 1


def _chaos(args: argparse.Namespace) -> int:
    from services.tools.chaos import run_chaos

    report = run_chaos(args.seed, args.kills, iterations=args.iterations)
    print(json.dumps(report))
    print(f"kills survived: {report['kills_survived']}", file=sys.stderr)
    return 0 if report["passed"] else 1


def _reliability(args: argparse.Namespace) -> int:
    from services.tools.reliability import ROOT, run_checks, write

    docs = ROOT / "docs"
    figures = (
        json.loads((docs / "reliability.json").read_text())
        if args.render_only
        else run_checks(args.load_seconds, args.chaos_seed, args.chaos_kills)
    )
    print(f"wrote {write(figures, docs)}", file=sys.stderr)
    return 0


def _bench_policy(args: argparse.Namespace) -> int:
    from services.tools.policy_bench import run_policy_benchmark

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
    from services.tools.demo import run_demo

    return run_demo(args.workdir, iterations=args.iterations, samples=args.samples)


def _models(args: argparse.Namespace) -> int:
    from services.models.loading import minilm_path, smollm2_path
    from services.sim.tiny_model import build_tiny_llama

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

    backend = serve.add_parser("backend", help="the Label Studio ML backend (HTTP)")
    backend.add_argument("--host", default="127.0.0.1")
    backend.add_argument("--port", type=int, default=9091)
    backend.add_argument("--store", default="sqlite:///preferences.db", help="SQLAlchemy URL of the preference store")
    backend.add_argument("--reward-url", default="127.0.0.1:50051", help="reward service HOST:PORT")
    backend.add_argument("--policy-url", help="policy service HOST:PORT: new prompt-only tasks get candidates")
    backend.add_argument("--candidates", type=int, default=4, help="candidates per task (Pairwise: 2)")
    backend.add_argument("--max-new-tokens", type=int, default=64)
    backend.add_argument(
        "--basic-auth-user",
        help=f"require basic auth (password in ${BACKEND_PASSWORD_ENV}); webhooks may also need a shared "
        "secret: set $RLHF_LOOP_WEBHOOK_SECRET here and for `project init`",
    )
    backend.add_argument("--log-level", default="INFO")
    _add_labelstudio_options(backend)
    backend.set_defaults(func=_serve_backend)

    labelstudio = commands.add_parser("labelstudio", help="a local Label Studio server").add_subparsers(
        dest="labelstudio_command", required=True
    )
    ls_up = labelstudio.add_parser("up", help="install (once) and start Label Studio on 127.0.0.1")
    ls_up.add_argument("--port", type=int, default=8080)
    ls_up.add_argument("--data-dir", type=Path)
    ls_up.set_defaults(func=_labelstudio_up)
    ls_down = labelstudio.add_parser("down", help="stop the Label Studio that `up` started")
    ls_down.add_argument("--data-dir", type=Path)
    ls_down.set_defaults(func=_labelstudio_down)

    project = commands.add_parser("project", help="Label Studio projects").add_subparsers(
        dest="project_command", required=True
    )
    init = project.add_parser("init", help="create a ranking project wired to the backend (idempotent)")
    init.add_argument("--template", choices=["ranker", "ranker-buckets", "pairwise"], default="ranker")
    init.add_argument("--title", default="rlhf-loop rankings")
    init.add_argument("--candidates", type=int, default=4, help="candidates per task (Pairwise always 2)")
    init.add_argument("--backend-url", default="http://127.0.0.1:9091", help="where Label Studio reaches the backend")
    init.add_argument("--basic-auth-user", help=f"the backend's basic-auth user (password in ${BACKEND_PASSWORD_ENV})")
    _add_labelstudio_options(init)
    init.set_defaults(func=_project_init)

    tasks = commands.add_parser("tasks", help="Label Studio tasks").add_subparsers(dest="tasks_command", required=True)
    task_import = tasks.add_parser("import", help="generate candidates for prompts (JSONL), then import them")
    task_import.add_argument("file", type=Path, help='JSON lines with a "prompt" each')
    task_import.add_argument("--project", type=int, required=True)
    task_import.add_argument("--policy-url", default="127.0.0.1:50052")
    task_import.add_argument("--candidates", type=int, help="default: what `project init --candidates` set")
    task_import.add_argument("--max-new-tokens", type=int, default=64)
    _add_labelstudio_options(task_import)
    task_import.set_defaults(func=_tasks_import)

    sync = commands.add_parser("sync", help="make the preference store equal to Label Studio's export")
    sync.add_argument("--project", type=int, required=True)
    sync.add_argument("--store", default="sqlite:///preferences.db")
    _add_labelstudio_options(sync)
    sync.set_defaults(func=_sync)

    prefs = commands.add_parser("prefs", help="the preference store").add_subparsers(
        dest="prefs_command", required=True
    )
    stats = prefs.add_parser("stats", help="counts, inter-annotator agreement, merged preferences")
    stats.add_argument("--store", default="sqlite:///preferences.db")
    stats.add_argument("--project", type=int)
    stats.add_argument("--merged", action="store_true", help="include the merged preference of every pair")
    stats.set_defaults(func=_prefs_stats)

    annotate = commands.add_parser("annotate", help="annotation without people").add_subparsers(
        dest="annotate_command", required=True
    )
    simulate = annotate.add_parser("simulate", help="real Label Studio users ranking by a gold scorer plus noise")
    simulate.add_argument("--project", type=int, required=True)
    simulate.add_argument("--annotators", type=int, default=3)
    simulate.add_argument(
        "--gold", default="services.sim.gold:vader_positivity", help="module:function(prompt, response)"
    )
    simulate.add_argument("--temperature", type=float, help="Gumbel noise in gold units (default: calibrated)")
    simulate.add_argument(
        "--target-agreement", type=float, default=0.73, help="inter-annotator agreement the noise is tuned to"
    )
    simulate.add_argument("--limit", type=int, help="tasks per annotator (default: all it has not done)")
    simulate.add_argument("--seed", type=int, default=0)
    _add_labelstudio_options(simulate)
    simulate.set_defaults(func=_annotate_simulate)

    loop = commands.add_parser("loop", help="the iteration controller").add_subparsers(
        dest="loop_command", required=True
    )
    loop_run = loop.add_parser("run", help="run or resume the configured iterations")
    loop_run.add_argument("--config", type=Path, required=True, help="loop.toml")
    loop_run.set_defaults(func=_loop_run)
    watch = loop.add_parser("watch", help="run an iteration on each START_TRAINING from the backend or schedule")
    watch.add_argument("--config", type=Path, required=True)
    watch.add_argument("--every-s", type=float, help="also start an iteration every this many seconds")
    watch.set_defaults(func=_loop_watch)
    loop_report = loop.add_parser("report", help="judge the policies by the gold scorer; write report files")
    loop_report.add_argument("--config", type=Path, required=True)
    loop_report.add_argument("--out", type=Path, default=Path("loop-report"), help="folder for the report files")
    loop_report.add_argument("--samples", type=int, default=4, help="answers per held-out prompt and version")
    loop_report.set_defaults(func=_loop_report)
    for name, text in (("status", "the current iteration and stage"), ("history", "every iteration's results")):
        view = loop.add_parser(name, help=text)
        view.add_argument("--config", type=Path, required=True)
        view.set_defaults(func=_loop_history, command_name=name)

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

    bench_load = bench.add_parser("load", help="reward Score + backend /predict under load, then overload")
    bench_load.add_argument("--model", default="minilm")
    bench_load.add_argument("--clients", type=int, default=64)
    bench_load.add_argument("--seconds", type=float, default=60.0, help="length of the sustained phase")
    bench_load.add_argument("--overload-seconds", type=float, default=20.0)
    bench_load.add_argument("--json", action="store_true", help="one-line JSON")
    bench_load.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    bench_load.set_defaults(func=_bench_load)

    chaos = commands.add_parser("chaos", help="kill -9 parts of a running loop at random moments; check the result")
    chaos.add_argument("--seed", type=int, default=0)
    chaos.add_argument("--kills", type=int, default=5)
    chaos.add_argument("--iterations", type=int, default=2)
    chaos.set_defaults(func=_chaos)

    reliability = commands.add_parser(
        "reliability", help="run load, fuzzing, chaos, security; write docs/RELIABILITY.md"
    )
    reliability.add_argument("--load-seconds", type=float, default=60.0)
    reliability.add_argument("--chaos-seed", type=int, default=1)
    reliability.add_argument("--chaos-kills", type=int, default=5)
    reliability.add_argument("--render-only", action="store_true", help="re-render the page from docs/reliability.json")
    reliability.set_defaults(func=_reliability)

    health = commands.add_parser("health", help="exit 0 when a service is healthy (for container health checks)")
    health.add_argument("target", help="HOST:PORT of a gRPC service (grpc.health.v1), or an http(s) URL")
    health.add_argument("--timeout-s", type=float, default=5.0)
    health.add_argument("--tls-ca", type=Path, help="CA certificate of a TLS service")
    health.set_defaults(func=_health)

    demo = commands.add_parser("demo", help="the main job on embedded defaults, offline")
    demo.add_argument("--workdir", type=Path, default=Path("demo-output"), help="services' data and the report")
    demo.add_argument("--iterations", type=int, default=2)
    demo.add_argument("--samples", type=int, default=4, help="answers per held-out prompt in the report")
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
    from services.core.errors import ServiceError

    try:
        return args.func(args)
    except ServiceError as error:  # a clear message, not a traceback, for what the user can fix
        print(f"rlhf-loop: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
