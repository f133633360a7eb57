"""What the loop reports while it runs: plain lines on stderr (CLI, logs) or live bars (the demo)."""

from __future__ import annotations

import sys

from services.controller.loop_state import STAGES


class LoopProgress:
    """Lines on stderr; one per stage, every tenth training step, and every message."""

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def stage(self, number: int, name: str) -> None:
        self.message(f"iteration {number}: {name}")

    def steps(self, label: str, done: int, total: int) -> None:
        if done == 1 or done == total or done % 10 == 0:
            self.message(f"  {label} {done}/{total}")

    def close(self) -> None:
        """Nothing to tear down for plain lines."""


class RichLoopProgress(LoopProgress):
    """A bar over all stages of all iterations, and one for the steps of the work in hand."""

    def __init__(self, iterations: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, log_path=False)
        self.bars = Progress(
            TextColumn("{task.description}", style="bold"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console,
        )  # fmt: skip
        self.per_iteration = len(STAGES) - 1  # "done" is not work
        self.overall = self.bars.add_task("loop", total=iterations * self.per_iteration)
        self.work = self.bars.add_task("", total=1, visible=False)
        self.bars.start()

    def message(self, text: str) -> None:
        self.console.log(text)

    def stage(self, number: int, name: str) -> None:
        done = (number - 1) * self.per_iteration + STAGES.index(name)
        self.bars.update(self.overall, completed=done, description=f"iteration {number}: {name}")
        self.bars.update(self.work, visible=False)

    def steps(self, label: str, done: int, total: int) -> None:
        self.bars.update(self.work, description=f"  {label}", completed=done, total=max(total, 1), visible=True)

    def close(self) -> None:
        self.bars.update(self.overall, completed=self.bars.tasks[self.overall].total)
        self.bars.stop()
