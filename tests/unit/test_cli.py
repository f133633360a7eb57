import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=120)


def test_a_model_that_is_not_there_is_a_clear_error_not_a_traceback(tmp_path):
    result = run("serve", "reward", "--registry", str(tmp_path / "r"), "--model", str(tmp_path / "missing"),
                 "--port", "0", "--metrics-port", "0")  # fmt: skip
    assert result.returncode == 2
    assert "neither an embedded model" in result.stderr and "Traceback" not in result.stderr


def test_commands_that_need_label_studio_say_how_to_start_it(tmp_path):
    result = run("sync", "--project", "1", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "rlhf-loop labelstudio up" in result.stderr
