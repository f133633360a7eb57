"""The product stands apart from its demo world: nothing outside services.sim and services.tools imports them."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.controller.loop_config import LoopConfig
from services.core.errors import InvalidRequestError

ROOT = Path(__file__).resolve().parents[2]
WINGS = ("services.sim", "services.tools")

# Runs in a fresh interpreter: a finder refuses the wings, then every product module is imported.
BLOCKED_IMPORT = """
import importlib, json, sys
WINGS = {wings!r}

class RefuseWings:
    def find_spec(self, name, path=None, target=None):
        if any(name == w or name.startswith(w + ".") for w in WINGS):
            raise ImportError(f"{{name}} is a simulation/tools wing")
        return None

sys.meta_path.insert(0, RefuseWings())
failed = {{}}
for module in {modules!r}:
    try:
        importlib.import_module(module)
    except ImportError as error:
        failed[module] = str(error)
print(json.dumps(failed))
"""


def product_modules() -> list[str]:
    modules = []
    for package in ("services", "labelstudio_backend"):
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            name = info.name
            if name.startswith(WINGS) or name.endswith("__main__"):
                continue
            modules.append(name)
    return modules


def test_product_modules_import_with_the_sim_and_tools_wings_unavailable():
    modules = product_modules()
    assert {"services.controller.loop", "services.policy.service", "services.cli", "labelstudio_backend.app"} <= set(
        modules
    )
    code = BLOCKED_IMPORT.format(wings=WINGS, modules=modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


def test_the_refusing_finder_does_catch_a_wing_import():
    """The check above can fail: a module that imports a wing is reported."""
    code = BLOCKED_IMPORT.format(wings=WINGS, modules=["services.sim.gold"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "services.sim.gold" in json.loads(result.stdout.strip().splitlines()[-1])


def test_a_real_run_needs_a_prompts_file_and_loads_no_gold(tmp_path):
    with pytest.raises(InvalidRequestError, match="prompts_file is required"):
        LoopConfig().validate()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi?"}\n')
    # A gold scorer that does not exist is never loaded outside simulation...
    LoopConfig(prompts_file=str(prompts), gold="no_such_module:gold").validate()
    # ...and is checked up front when the run simulates.
    with pytest.raises(InvalidRequestError, match="gold scorer"):
        LoopConfig(simulate=True, gold="no_such_module:gold").validate()
