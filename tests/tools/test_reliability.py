"""The reliability page is gathered from the files `make reliability` writes: JUnit reports and the commands' JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.core.errors import PreconditionError
from services.tools.reliability import gather, render, write

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_reports_what_the_results_folder_holds(tmp_path):
    stored = json.loads((ROOT / "docs" / "reliability.json").read_text())
    results = tmp_path / "results"
    results.mkdir()
    (results / "load.json").write_text(json.dumps(stored["load"]))
    (results / "chaos.json").write_text(json.dumps(stored["chaos"]))
    # Real JUnit reports from pytest: one suite with a failure, one that passes.
    suite = tmp_path / "test_probe.py"
    suite.write_text("def test_ok():\n    pass\n\ndef test_broken():\n    assert False\n")
    for name, select in (("fuzzing", []), ("security", ["-k", "not broken"])):
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite), *select,
                        f"--junitxml={results / f'{name}.xml'}"], cwd=tmp_path, capture_output=True)  # fmt: skip
    figures = gather(results)
    assert figures["suites"]["fuzzing"] | {"seconds": 0} == {
        "tests": 2, "failures": 1, "errors": 0, "skipped": 0, "passed": 1, "seconds": 0, "file": "test_probe.py"
    }  # fmt: skip
    assert figures["suites"]["security"]["tests"] == 1 and figures["suites"]["security"]["passed"] == 1
    assert figures["load"] == stored["load"] and figures["chaos"] == stored["chaos"]
    page = write(figures, tmp_path)
    assert page.read_text() == render(figures) and "| fuzzing | `test_probe.py` | 2 | 1 | 1 |" in page.read_text()
    assert json.loads((tmp_path / "reliability.json").read_text()) == figures


def test_missing_results_name_the_make_target(tmp_path):
    with pytest.raises(PreconditionError, match="make reliability"):
        gather(tmp_path)
