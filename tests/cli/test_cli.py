import argparse
import subprocess
import sys

import pytest

from services.cli import GROUPS, build_parser

COMMANDS = ["serve", "train", "labelstudio", "project", "tasks", "sync", "prefs", "annotate", "loop", "bench", "chaos",
            "reliability", "health", "demo", "models", "image"]  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=120)


def sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def handlers(parser: argparse.ArgumentParser) -> list:
    """The handler of every runnable command under parser."""
    found = [parser.get_default("func")] if parser.get_default("func") else []
    return found + [h for sub in sub_commands(parser).values() for h in handlers(sub)]


def test_a_model_that_is_not_there_is_a_clear_error_not_a_traceback(tmp_path):
    result = run("serve", "reward", "--registry", str(tmp_path / "r"), "--model", str(tmp_path / "missing"),
                 "--port", "0", "--metrics-port", "0")  # fmt: skip
    assert result.returncode == 2
    assert "neither an embedded model" in result.stderr and "Traceback" not in result.stderr


def test_commands_that_need_label_studio_say_how_to_start_it(tmp_path):
    result = run("sync", "--project", "1", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "rlhf-loop labelstudio up" in result.stderr


def test_the_parser_lists_every_top_level_command_in_order():
    assert list(sub_commands(build_parser())) == COMMANDS


@pytest.mark.parametrize("group", GROUPS, ids=lambda group: group.__name__.rsplit(".", 1)[-1])
def test_each_group_module_owns_its_parsers_and_their_handlers(group):
    commands = argparse.ArgumentParser().add_subparsers()
    group.register(commands)
    found = [h for sub in commands.choices.values() for h in handlers(sub)]
    assert found and {handler.__module__ for handler in found} == {group.__name__}


def test_python_m_services_cli_help_works_without_loading_the_services():
    assert run("--help").returncode == 0
    # --help stays fast: parsing imports no service, model, simulation or tool code.
    probe = "import sys; from services.cli import build_parser; build_parser(); print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    heavy = ("torch", "grpc", "transformers", "labelstudio_backend", "services.sim", "services.tools", "services.rpc")
    assert not [name for name in loaded if name.startswith(heavy)]
