import asyncio
import time

import pytest

from services.reward.batching import BatchStats, DeadlineExpiredError, DynamicBatcher, QueueFullError


class Recorder:
    def __init__(self, delay_s: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay_s = delay_s

    def __call__(self, items):
        time.sleep(self.delay_s)
        self.batches.append(list(items))
        return [i * 10 for i in items]


async def started(batcher: DynamicBatcher) -> DynamicBatcher:
    batcher.start()
    return batcher


async def test_concurrent_requests_share_batches_up_to_max_batch():
    recorder = Recorder(delay_s=0.01)
    batcher = await started(DynamicBatcher(recorder, max_batch=8, max_wait_s=0.05, max_queue=100))
    results = await asyncio.gather(*(batcher.submit([i]) for i in range(20)))
    await batcher.stop()
    assert results == [[i * 10] for i in range(20)]
    assert max(len(b) for b in recorder.batches) == 8
    assert len(recorder.batches) <= 4  # 20 single-item requests merged, not 20 forwards
    assert sorted(i for b in recorder.batches for i in b) == list(range(20))


async def test_a_lone_request_waits_at_most_max_wait():
    batcher = await started(DynamicBatcher(Recorder(), max_batch=64, max_wait_s=0.02, max_queue=100))
    begin = time.monotonic()
    assert await batcher.submit([1, 2]) == [10, 20]
    assert time.monotonic() - begin < 0.5
    await batcher.stop()


async def test_expired_items_are_dropped_not_computed():
    recorder = Recorder(delay_s=0.2)
    stats: list[BatchStats] = []
    batcher = await started(DynamicBatcher(recorder, max_batch=1, max_wait_s=0, max_queue=100, on_batch=stats.append))
    slow = asyncio.ensure_future(batcher.submit([1]))  # occupies the model for 0.2 s
    await asyncio.sleep(0.01)
    with pytest.raises(DeadlineExpiredError):
        await batcher.submit([2], deadline=time.monotonic() + 0.05)
    assert await slow == [10]
    await batcher.stop()
    assert [b for b in recorder.batches] == [[1]]
    assert sum(s.dropped_deadline for s in stats) == 1


async def test_cancelled_callers_are_dropped():
    recorder = Recorder(delay_s=0.2)
    batcher = await started(DynamicBatcher(recorder, max_batch=1, max_wait_s=0, max_queue=100))
    slow = asyncio.ensure_future(batcher.submit([1]))
    await asyncio.sleep(0.01)
    gone = asyncio.ensure_future(batcher.submit([2]))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await slow == [10]
    await asyncio.sleep(0.05)
    await batcher.stop()
    assert recorder.batches == [[1]]


async def test_full_queue_refuses_instead_of_growing():
    batcher = await started(DynamicBatcher(Recorder(delay_s=0.2), max_batch=1, max_wait_s=0, max_queue=4))
    first = asyncio.ensure_future(batcher.submit([1]))
    await asyncio.sleep(0.01)  # item 1 is in the model, the queue is empty
    waiting = asyncio.ensure_future(batcher.submit([2, 3, 4]))
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError, match="4 items"):
        await batcher.submit([5, 6])
    assert await first == [10] and await waiting == [20, 30, 40]
    await batcher.stop()


async def test_a_failing_batch_fails_its_callers_and_the_batcher_goes_on():
    calls = []

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return list(items)

    batcher = await started(DynamicBatcher(flaky, max_batch=4, max_wait_s=0, max_queue=10))
    with pytest.raises(RuntimeError, match="boom"):
        await batcher.submit([1])
    assert await batcher.submit([2]) == [2]
    await batcher.stop()
