"""Dynamic batching: merge items from concurrent requests into shared model calls.

Runs inside the server's asyncio loop (that is why the services use grpc.aio):
requests enqueue their items and await one future each; one worker task
collects up to `max_batch` items and runs the batch in a single-thread
executor so the model never sees two batches at once. Items whose deadline has
passed, or whose caller went away, are dropped before the forward pass instead
of being computed.

How long a batch is held open for more items is the wait policy:
- "fixed": up to `max_wait_s` after its oldest item arrived. Under many
  closed-loop clients this splits them into two halves that alternate: the
  items that came during a forward pass are already older than the wait, so
  they run at once, without the callers whose answers that pass just sent.
- "adaptive" (default): callers whose requests were just answered are
  expected back (RL trainers and benchmarks send again as soon as they get an
  answer); while some are, the batch waits for them, never longer in all than
  the last forward pass took (or `max_wait_s`, if that is longer), and once
  they are coming back, no longer than `max_wait_s` after the last arrival.
  When none is expected it runs at once, so a lone client waits for nothing.
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

ADAPTIVE, FIXED = "adaptive", "fixed"
WAIT_POLICIES = (ADAPTIVE, FIXED)


class QueueFullError(OverloadedError):
    """The batcher's queue cannot take the request's items."""


class DeadlineExpiredError(DeadlineError):
    """The item's deadline passed before its batch ran."""


@dataclass(eq=False)
class _Request(Generic[Item, Result]):
    """One submit: its items may be split over consecutive batches; its one future resolves with all results."""

    items: Sequence[Item]
    deadline: float | None  # time.monotonic() seconds
    future: asyncio.Future[list[Result]]
    enqueued: float
    results: list[Result | None]  # filled in as its batches finish
    unfinished: int  # items whose results are not in yet
    taken: int = 0  # items handed to batches so far


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
        wait: str = ADAPTIVE,
        executor: Executor | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_s >= 0")
        if wait not in WAIT_POLICIES:
            raise ValueError(f"wait must be one of {', '.join(WAIT_POLICIES)}, not {wait!r}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.wait = wait
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self._on_batch = on_batch
        self._queue: collections.deque[_Request[Item, Result]] = collections.deque()
        self._depth = 0  # queued items not yet handed to a batch
        self._expected = 0  # requests answered whose callers have not sent again (the adaptive wait's hint)
        self._last_arrival = 0.0
        self._free_since = 0.0  # when the last batch finished
        self._last_forward_s = 0.0
        # The waiting worker's; submit resolves it only when there is a reason to look (first item, batch
        # ready), not for every item.
        self._waiter: asyncio.Future[bool] | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def expected(self) -> int:
        """Callers the adaptive wait expects back: answered since their last request, not yet here again."""
        return self._expected

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
        if not items:
            return []
        if self._depth + len(items) > self.max_queue:
            raise QueueFullError(
                f"queue full: {self._depth} of {self.max_queue} items waiting, request has {len(items)}"
            )
        now = time.monotonic()
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(items, deadline, future, now, [None] * len(items), len(items)))
        self._depth += len(items)
        self._last_arrival = now
        if self._expected:
            self._expected -= 1
        if self._waiter is not None and (len(self._queue) == 1 or self._batch_ready()):
            _resolve(self._waiter, True)
        return await future

    def _batch_ready(self) -> bool:
        """Nothing left to wait for: the batch is full or, adaptively, no caller is expected back."""
        return self._depth >= self.max_batch or (self.wait == ADAPTIVE and not self._expected)

    async def _woken(self, until: float | None) -> bool:
        """Wait for submit to wake the worker, up to the monotonic time `until` (None: no limit); False on timeout."""
        timeout = None if until is None else until - time.monotonic()
        if timeout is not None and timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        # A future and a timer, not asyncio.wait_for, which makes a task per wait.
        self._waiter = waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _resolve, waiter, False)
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_items()
            await (self._hold_adaptive() if self.wait == ADAPTIVE else self._hold_fixed())
            parts, stats = self._take()
            if self._on_batch:
                self._on_batch(stats)
            if parts:
                await self._run(loop, parts)
            self._free_since = time.monotonic()

    @property
    def _hold_until(self) -> float:
        """The longest an adaptive hold lasts: one forward pass after the model became free, or max_wait if longer.

        Holding longer than a forward pass takes would cost more than running
        the latecomers in a batch of their own; max_wait is the latency the
        operator already accepts for batching, so a model faster than that
        (or the null model, whose "forward" is the executor hop) may use it.
        """
        return self._free_since + max(self._last_forward_s, self.max_wait_s)

    async def _wait_for_items(self) -> None:
        """Until something is queued; expected callers who stay away for a whole hold are forgotten."""
        if self._expected and not self._queue and not await self._woken(self._hold_until):
            self._expected = 0
        while not self._queue:
            await self._woken(None)

    async def _hold_fixed(self) -> None:
        """Up to max_wait after the oldest queued item arrived, unless the batch fills first."""
        while self._queue and self._depth < self.max_batch:
            if not await self._woken(self._queue[0].enqueued + self.max_wait_s):
                return

    async def _hold_adaptive(self) -> None:
        """While callers are expected back: up to _hold_until, and once the first of them is back, for at most
        max_wait after the last arrival.

        The first caller back may take the whole hold: it is late for a reason
        that says nothing about the others, the event loop sending all the
        last batch's replies first.
        """
        hold_until = self._hold_until
        while not self._batch_ready():
            until = hold_until
            if self._last_arrival > self._free_since:
                until = min(until, self._last_arrival + self.max_wait_s)
            if time.monotonic() >= until:
                self._expected = 0  # not coming soon enough: stop holding batches for them
                return
            await self._woken(until)

    def _take(self) -> tuple[list[tuple[_Request[Item, Result], int, int]], BatchStats]:
        """The next batch as (request, first item, item count) parts, dropping expired and abandoned requests."""
        parts: list[tuple[_Request[Item, Result], int, int]] = []
        size, expired, cancelled = 0, 0, 0
        now = time.monotonic()
        oldest_wait = now - self._queue[0].enqueued
        while self._queue and size < self.max_batch:
            request = self._queue[0]
            left = len(request.items) - request.taken
            if request.future.done():  # the caller went away, or an earlier part of the request failed
                self._queue.popleft()
                self._depth -= left
                cancelled += left if request.future.cancelled() else 0
            elif request.deadline is not None and request.deadline <= now:
                self._queue.popleft()
                self._depth -= left
                expired += left
                request.future.set_exception(DeadlineExpiredError("deadline passed while queued"))
            else:
                take = min(left, self.max_batch - size)
                parts.append((request, request.taken, take))
                request.taken += take
                size += take
                self._depth -= take
                if request.taken == len(request.items):
                    self._queue.popleft()
        return parts, BatchStats(size, expired, cancelled, oldest_wait)

    async def _run(self, loop: asyncio.AbstractEventLoop, parts: list[tuple[_Request[Item, Result], int, int]]) -> None:
        """One forward pass over the parts; a request's future resolves once all its items have results."""
        items = [item for request, first, count in parts for item in request.items[first : first + count]]
        started = time.monotonic()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, items)
            if len(results) != len(items):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
        except Exception as error:  # a failed batch fails its callers, not the worker
            for request, _, _ in parts:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        finally:
            self._last_forward_s = time.monotonic() - started
        offset = 0
        for request, first, count in parts:
            request.results[first : first + count] = results[offset : offset + count]
            offset += count
            request.unfinished -= count
            if not request.unfinished and not request.future.done():
                request.future.set_result(request.results)
                self._expected += 1


def _resolve(waiter: asyncio.Future[bool], woken: bool) -> None:
    if not waiter.done():
        waiter.set_result(woken)
