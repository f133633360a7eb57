"""Dynamic batching: merge items from concurrent requests into shared model calls.

Runs inside the server's asyncio loop (that is why the services use grpc.aio):
requests enqueue items and await futures; one worker task collects up to
`max_batch` items, waiting at most `max_wait_s` after the oldest one arrived,
and runs the batch in a single-thread executor so the model never sees two
batches at once. Items whose deadline has passed, or whose caller went away,
are dropped before the forward pass instead of being computed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.core.errors import DeadlineError, OverloadedError

Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFullError(OverloadedError):
    """The batcher's queue cannot take the request's items."""


class DeadlineExpiredError(DeadlineError):
    """The item's deadline passed before its batch ran."""


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    deadline: float | None  # time.monotonic() seconds
    future: asyncio.Future[Result]
    enqueued: float


@dataclass(frozen=True)
class BatchStats:
    size: int
    dropped_deadline: int
    dropped_cancelled: int
    oldest_wait_s: float


class DynamicBatcher(Generic[Item, Result]):
    """Runs `run_batch(items) -> results` on merged batches of submitted items."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        executor: Executor | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_s >= 0")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self._on_batch = on_batch
        self._queue: collections.deque[_Pending[Item, Result]] = collections.deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="dynamic-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(self, items: Sequence[Item], deadline: float | None = None) -> list[Result]:
        """Queue items, wait for their results; raises QueueFullError or DeadlineExpiredError."""
        if len(self._queue) + len(items) > self.max_queue:
            raise QueueFullError(
                f"queue full: {len(self._queue)} of {self.max_queue} items waiting, request has {len(items)}"
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        pending = [_Pending(item, deadline, loop.create_future(), now) for item in items]
        self._queue.extend(pending)
        self._arrived.set()
        return list(await asyncio.gather(*(p.future for p in pending)))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            # Wait for a full batch, but never longer than max_wait after the oldest item.
            while len(self._queue) < self.max_batch:
                remaining = self._queue[0].enqueued + self.max_wait_s - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch, expired, cancelled = [], 0, 0
            now = time.monotonic()
            oldest_wait = now - self._queue[0].enqueued
            while self._queue and len(batch) < self.max_batch:
                pending = self._queue.popleft()
                if pending.future.done():  # the caller was cancelled
                    cancelled += 1
                elif pending.deadline is not None and pending.deadline <= now:
                    expired += 1
                    pending.future.set_exception(DeadlineExpiredError("deadline passed while queued"))
                else:
                    batch.append(pending)
            if self._on_batch:
                self._on_batch(BatchStats(len(batch), expired, cancelled, oldest_wait))
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [p.item for p in batch])
            except Exception as error:  # a failed batch fails its callers, not the worker
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(error)
                continue
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
