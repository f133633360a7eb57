"""Reward, policy and backend on the tiny model, as real processes, for the integration tests that need all three."""

from pathlib import Path

from services.tools.service_process import ServiceProcess


def start_tiny_stack(root: Path, model: Path) -> tuple[ServiceProcess, ServiceProcess, ServiceProcess, str]:
    """(reward, policy, backend, store URL), all ready; stop them in reverse order."""
    reward = ServiceProcess("reward", ["--registry", str(root / "r"), "--model", str(model)], root / "r.log")
    reward.wait_ready()
    policy = ServiceProcess(
        "policy", ["--registry", str(root / "p"), "--model", str(model), "--reward-url", reward.target],
        root / "p.log",
    )  # fmt: skip
    policy.wait_ready()
    store = f"sqlite:///{root / 'prefs.db'}"
    backend = ServiceProcess("backend", ["--store", store, "--reward-url", reward.target], root / "b.log")
    backend.wait_ready()
    return reward, policy, backend, store
