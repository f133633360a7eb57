"""Reward, policy and backend on the tiny model, as real processes, for the integration tests that need all three."""

from pathlib import Path

from services.tools.local_stack import LocalStack
from services.tools.service_process import ServiceProcess


def start_tiny_stack(root: Path, model: Path) -> tuple[ServiceProcess, ServiceProcess, ServiceProcess, str]:
    """(reward, policy, backend, store URL), all ready; stop them in reverse order."""
    stack = LocalStack(root)
    store = f"sqlite:///{root / 'prefs.db'}"
    try:
        return stack.reward(str(model)), stack.policy(str(model)), stack.backend(store), store
    except BaseException:
        stack.close()  # a part that failed to start leaves none running
        raise
