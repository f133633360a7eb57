"""`rlhf-loop bench reward|policy|load|selection|reward-options`: benchmarks that print JSON.

--check fails on a missed target.
"""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    """Add `bench` and its benchmarks."""
    bench = commands.add_parser("bench", help="benchmarks that print JSON").add_subparsers(dest="bench", required=True)
    _add_reward(bench.add_parser("reward", help="reward-service throughput: gRPC vs in-process, batching"))
    _add_policy(bench.add_parser("policy", help="policy service: Generate and GRPO vs in-process, peak RSS"))
    _add_load(bench.add_parser("load", help="reward Score + backend /predict under load, then overload"))
    _add_selection(bench.add_parser("selection", help="reward-model accuracy by prompt selection strategy"))
    _add_reward_options(
        bench.add_parser("reward-options", help="reward-model accuracy by loss, warm start, candidates, ensemble")
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one-line JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")


def _print(report: dict, args: argparse.Namespace) -> int:
    """Print the report as --json asks; the exit code --check asks for."""
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["targets_met"] or not args.check else 1


def _add_reward(reward: argparse.ArgumentParser) -> None:
    reward.add_argument("--model", default="minilm")
    reward.add_argument("--clients", type=int, default=32)
    reward.add_argument("--seconds", type=float, default=10.0, help="measuring time per phase")
    reward.add_argument("--max-batch", type=int, default=32)
    reward.add_argument("--bucket-tokens", type=int, default=512)
    reward.add_argument("--max-wait-ms", type=float, default=5.0)
    reward.add_argument(
        "--wait-clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 8, 32],
        help="client counts at which the adaptive and the fixed batch wait are compared (default 1,8,32; 1 always)",
    )
    reward.add_argument(
        "--null-model",
        action="store_true",
        help="measure the serving path alone: a stand-in model whose forward costs nothing, 1 process vs --processes",
    )
    reward.add_argument(
        "--processes",
        type=int,
        help="serving processes on the service's port (default 1; with --null-model: compared with 1, default 2)",
    )
    _add_output_options(reward)
    reward.set_defaults(func=_reward)


def _reward(args: argparse.Namespace) -> int:
    if args.null_model:
        from services.tools.reward_serving_bench import run_serving_path_benchmark

        report = run_serving_path_benchmark(
            processes=args.processes or 2, seconds=args.seconds, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms
        )
        return _print(report, args)
    from services.tools.reward_bench import run_reward_benchmark

    report = run_reward_benchmark(
        model=args.model,
        clients=args.clients,
        seconds=args.seconds,
        max_batch=args.max_batch,
        bucket_tokens=args.bucket_tokens,
        max_wait_ms=args.max_wait_ms,
        wait_clients=args.wait_clients,
        processes=args.processes or 1,
    )
    return _print(report, args)


def _add_policy(policy: argparse.ArgumentParser) -> None:
    policy.add_argument("--policy-model", default="smollm2", help="'smollm2' or a checkpoint dir")
    policy.add_argument("--reward-model", default="minilm", help="'minilm' or a checkpoint dir")
    policy.add_argument("--prompts", type=int, default=4)
    policy.add_argument("--n", type=int, default=4, help="completions per prompt (GRPO group size)")
    policy.add_argument("--max-new-tokens", type=int, default=32)
    policy.add_argument("--grpo-steps", type=int, default=4)
    _add_output_options(policy)
    policy.set_defaults(func=_policy)


def _policy(args: argparse.Namespace) -> int:
    from services.tools.policy_bench import run_policy_benchmark

    report = run_policy_benchmark(
        policy_model=args.policy_model,
        reward_model=args.reward_model,
        prompts=args.prompts,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        grpo_steps=args.grpo_steps,
    )
    return _print(report, args)


def _add_load(load: argparse.ArgumentParser) -> None:
    load.add_argument("--model", default="minilm")
    load.add_argument("--clients", type=int, default=64)
    load.add_argument("--seconds", type=float, default=60.0, help="length of the sustained phase")
    load.add_argument("--overload-seconds", type=float, default=20.0)
    _add_output_options(load)
    load.set_defaults(func=_load)


def _load(args: argparse.Namespace) -> int:
    from services.tools.load_bench import run_load_benchmark

    return _print(run_load_benchmark(args.model, args.clients, args.seconds, args.overload_seconds), args)


def _add_selection(selection: argparse.ArgumentParser) -> None:
    selection.add_argument("--model", default="minilm", help="the reward model's backbone")
    selection.add_argument("--seeds", type=int, default=3)
    selection.add_argument("--rounds", type=int, default=3)
    selection.add_argument("--budget", type=int, default=12, help="prompts ranked per round")
    selection.add_argument("--pool", type=int, default=120, help="prompts to choose from")
    selection.add_argument("--members", type=int, default=4, help="ensemble heads of every strategy's model")
    _add_output_options(selection)
    selection.set_defaults(func=_selection)


def _selection(args: argparse.Namespace) -> int:
    from services.tools.selection_bench import run_selection_benchmark

    report = run_selection_benchmark(
        model=args.model, seeds=args.seeds, rounds=args.rounds, budget=args.budget, pool=args.pool,
        members=args.members,
    )  # fmt: skip
    return _print(report, args)


def _add_reward_options(options: argparse.ArgumentParser) -> None:
    options.add_argument("--model", default="minilm", help="the reward model's backbone")
    options.add_argument("--seeds", type=int, default=3)
    options.add_argument("--rounds", type=int, default=3)
    options.add_argument("--budget", type=int, default=12, help="prompts ranked per round")
    _add_output_options(options)
    options.set_defaults(func=_reward_options)


def _reward_options(args: argparse.Namespace) -> int:
    from services.tools.reward_options_bench import run_reward_options_benchmark

    report = run_reward_options_benchmark(model=args.model, seeds=args.seeds, rounds=args.rounds, budget=args.budget)
    return _print(report, args)
