"""`rlhf-loop labelstudio up|down`: a local Label Studio server in its own virtual environment.

Label Studio pins Django, pytz, openai, redis... that clash with this project,
so it lives in a venv of its own in the cache, built on first use. The
settings are the ones a scripted local server needs (checked on Label Studio 1.23): a known
admin and legacy API token, ML backends and webhooks on 127.0.0.1 allowed,
nothing phoned home.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from services.core.env import LABELSTUDIO_TOKEN_ENV
from services.core.errors import PreconditionError
from services.models.loading import cache_dir

LABEL_STUDIO_VERSION = "1.23.2"
CREDENTIALS_FILE = "rlhf-loop-credentials.json"
PID_FILE = "label-studio.pid"


@dataclass(frozen=True)
class Credentials:
    url: str
    username: str
    password: str
    token: str


def venv_dir() -> Path:
    return cache_dir() / f"label-studio-{LABEL_STUDIO_VERSION}"


def default_data_dir() -> Path:
    return cache_dir() / "label-studio-data"


def ensure_installed(progress=print) -> Path:
    """The label-studio executable, installing it into its own venv the first time (~1-3 min)."""
    venv = venv_dir()
    executable = venv / "bin" / "label-studio"
    if (venv / ".complete").is_file():
        return executable
    shutil.rmtree(venv, ignore_errors=True)  # an interrupted install is started over
    progress(f"installing Label Studio {LABEL_STUDIO_VERSION} into {venv} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, f"label-studio=={LABEL_STUDIO_VERSION}"], check=True)
    (venv / ".complete").touch()
    return executable


def port_is_free(port: int) -> bool:
    """No server listens on 127.0.0.1:port (connections of a crashed one lingering in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _environment(credentials: Credentials) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "USERNAME", "PASSWORD")}
    env.update(
        LABEL_STUDIO_USERNAME=credentials.username,
        LABEL_STUDIO_PASSWORD=credentials.password,
        LABEL_STUDIO_USER_TOKEN=credentials.token,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        COLLECT_ANALYTICS="false",
        LATEST_VERSION_CHECK="false",
        WEBHOOK_TIMEOUT="5",
    )
    return env


def _credentials(data_dir: Path, port: int) -> Credentials:
    """The admin login and token of this data dir: made once (before the first start), then reused."""
    path = data_dir / CREDENTIALS_FILE
    if path.is_file():
        credentials = Credentials(**{**json.loads(path.read_text()), "url": f"http://127.0.0.1:{port}"})
    else:
        credentials = Credentials(
            url=f"http://127.0.0.1:{port}",
            username="admin@rlhf-loop.local",
            password=secrets.token_urlsafe(12),
            token=secrets.token_hex(20),
        )
    path.write_text(json.dumps(asdict(credentials)))
    path.chmod(0o600)
    return credentials


def wait_healthy(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise PreconditionError(f"Label Studio exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if json.loads(reply.read()).get("status") == "UP":
                    return
        except (OSError, ValueError):
            pass
        time.sleep(1)
    raise PreconditionError(f"Label Studio at {url} not healthy after {timeout_s:.0f}s")


def up(port: int = 8080, data_dir: Path | None = None, timeout_s: float = 300, progress=print) -> Credentials:
    """Start Label Studio on 127.0.0.1:port (refusing a busy port) and wait for /health."""
    data_dir = Path(data_dir or default_data_dir())
    data_dir.mkdir(parents=True, exist_ok=True)
    if not port_is_free(port):
        raise PreconditionError(f"port {port} is busy; Label Studio would silently move to another one")
    executable = ensure_installed(progress)
    credentials = _credentials(data_dir, port)
    log = open(data_dir / "label-studio.log", "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir)],
        env=_environment(credentials), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    (data_dir / PID_FILE).write_text(str(process.pid))
    progress(f"starting Label Studio on {credentials.url} (first start runs migrations, ~30 s)")
    wait_healthy(credentials.url, timeout_s, process)
    return credentials


def down(data_dir: Path | None = None, timeout_s: float = 30) -> bool:
    """Stop the Label Studio started from this data dir; False when none was running."""
    pid_file = Path(data_dir or default_data_dir()) / PID_FILE
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return False
    deadline = time.monotonic() + timeout_s
    while not _group_gone(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    pid_file.unlink()
    return True


def _group_gone(pid: int) -> bool:
    # Reaped here when this process started it: an exited but unreaped leader still answers signal 0.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def load_credentials(data_dir: Path | str | None = None) -> Credentials:
    path = Path(data_dir or default_data_dir()) / CREDENTIALS_FILE
    if not path.is_file():
        raise PreconditionError(f"no Label Studio credentials in {path.parent}: run `rlhf-loop labelstudio up` first")
    return Credentials(**json.loads(path.read_text()))


def labelstudio_credentials(url: str | None, data_dir: Path | str | None = None) -> tuple[str, str]:
    """(url, API token): the given URL with $RLHF_LOOP_LABELSTUDIO_TOKEN, else what `labelstudio up` saved."""
    if url:
        token = os.environ.get(LABELSTUDIO_TOKEN_ENV)
        if not token:
            raise PreconditionError(f"labelstudio_url needs the API token in ${LABELSTUDIO_TOKEN_ENV}")
        return url, token
    credentials = load_credentials(data_dir)
    return credentials.url, credentials.token
