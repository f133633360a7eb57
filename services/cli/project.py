"""`rlhf-loop project init`, `tasks import`, `sync`: a Label Studio project and its tasks."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from services.cli.options import add_labelstudio_options, basic_auth, labelstudio_login
from services.core.env import BACKEND_PASSWORD_ENV, WEBHOOK_SECRET_ENV


def register(commands: argparse._SubParsersAction) -> None:
    """Add `project init`, `tasks import` and `sync`."""
    project = commands.add_parser("project", help="Label Studio projects").add_subparsers(
        dest="project_command", required=True
    )
    _add_init(project.add_parser("init", help="create a ranking project wired to the backend (idempotent)"))
    tasks = commands.add_parser("tasks", help="Label Studio tasks").add_subparsers(dest="tasks_command", required=True)
    _add_tasks_import(tasks.add_parser("import", help="generate candidates for prompts (JSONL), then import them"))
    _add_sync(commands.add_parser("sync", help="make the preference store equal to Label Studio's export"))


def _add_init(init: argparse.ArgumentParser) -> None:
    init.add_argument("--template", choices=["ranker", "ranker-buckets", "pairwise"], default="ranker")
    init.add_argument("--title", default="rlhf-loop rankings")
    init.add_argument("--candidates", type=int, default=4, help="candidates per task (Pairwise always 2)")
    init.add_argument("--backend-url", default="http://127.0.0.1:9091", help="where Label Studio reaches the backend")
    init.add_argument("--basic-auth-user", help=f"the backend's basic-auth user (password in ${BACKEND_PASSWORD_ENV})")
    init.add_argument(
        "--instructions",
        type=Path,
        help="shown to annotators before the first task: an .html file as it is, any other as plain text "
        "(default: the built-in guide to what 'better' means)",
    )
    init.add_argument(
        "--pre-rank",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of tasks (0-1) that open pre-ranked by the reward model; 0, the default, avoids anchoring",
    )
    add_labelstudio_options(init)
    init.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from labelstudio_backend.instructions import DEFAULT_INSTRUCTIONS, read_instructions
    from labelstudio_backend.project_setup import init_project, labelstudio_client

    instructions = read_instructions(args.instructions) if args.instructions else DEFAULT_INSTRUCTIONS
    url, token = labelstudio_login(args)
    setup = init_project(
        labelstudio_client(url, token),
        template=args.template,
        title=args.title,
        backend_url=args.backend_url,
        basic_auth=basic_auth(args),
        webhook_secret=os.environ.get(WEBHOOK_SECRET_ENV) or None,
        candidates=args.candidates,
        instructions=instructions,
        pre_rank=args.pre_rank,
    )
    print(json.dumps(vars(setup) | {"url": f"{url}/projects/{setup.project_id}"}, indent=2))
    return 0


def _add_tasks_import(task_import: argparse.ArgumentParser) -> None:
    task_import.add_argument("file", type=Path, help='JSON lines with a "prompt" each')
    task_import.add_argument("--project", type=int, required=True)
    task_import.add_argument("--policy-url", default="127.0.0.1:50052")
    task_import.add_argument("--candidates", type=int, help="default: what `project init --candidates` set")
    task_import.add_argument("--max-new-tokens", type=int, default=64)
    add_labelstudio_options(task_import)
    task_import.set_defaults(func=_tasks_import)


def _tasks_import(args: argparse.Namespace) -> int:
    from labelstudio_backend.candidates import generate_task_data
    from labelstudio_backend.project_setup import labelstudio_client, project_candidates
    from labelstudio_backend.templates import template_of
    from services.core.prompts_file import read_prompts
    from services.policy.client import PolicyClient
    from services.policy.sampling import Sampling

    prompts = read_prompts(args.file)
    url, token = labelstudio_login(args)
    client = labelstudio_client(url, token)
    template = template_of(client.projects.get(id=args.project).label_config)
    with PolicyClient(args.policy_url, timeout_s=1800) as policy:
        k = args.candidates or project_candidates(client, args.project, default=4)
        data = generate_task_data(policy, prompts, k, template, Sampling(max_new_tokens=args.max_new_tokens))
    reply = client.projects.import_tasks(args.project, request=data, return_task_ids=True)
    print(json.dumps({"imported": len(data), "task_ids": list(reply.task_ids or [])}))
    return 0


def _add_sync(sync: argparse.ArgumentParser) -> None:
    sync.add_argument("--project", type=int, required=True)
    sync.add_argument("--store", default="sqlite:///preferences.db")
    add_labelstudio_options(sync)
    sync.set_defaults(func=_sync)


def _sync(args: argparse.Namespace) -> int:
    from labelstudio_backend.preference_store import PreferenceStore
    from labelstudio_backend.project_setup import labelstudio_client
    from labelstudio_backend.sync import sync_project

    url, token = labelstudio_login(args)
    report = sync_project(labelstudio_client(url, token), PreferenceStore(args.store), args.project)
    print(json.dumps(vars(report)))
    return 0
