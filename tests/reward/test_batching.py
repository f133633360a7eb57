import asyncio
import time

import pytest

from services.reward.batching import FIXED, BatchStats, DeadlineExpiredError, DynamicBatcher, QueueFullError

# Behaviour, not speed: every wait below that must not happen is set far longer (LONG) than the test's own
# waits for anything, so a loaded machine slows these tests down but does not flip them.
LONG = 30.0


class Recorder:
    def __init__(self, delay_s: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay_s = delay_s

    def __call__(self, items):
        self.batches.append(list(items))  # when the batch starts, so a test can see a batch that is running
        time.sleep(self.delay_s)
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


async def test_a_lone_request_waits_at_most_max_wait_with_the_fixed_wait():
    batcher = await started(DynamicBatcher(Recorder(), max_batch=64, max_wait_s=0.02, max_queue=100, wait=FIXED))
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


async def within(awaitable, seconds: float = 10.0):
    """Fail fast instead of hanging when a batch is held that should not be."""
    return await asyncio.wait_for(awaitable, seconds)


async def test_a_request_larger_than_max_batch_spans_batches_and_keeps_its_order():
    recorder = Recorder()
    batcher = await started(DynamicBatcher(recorder, max_batch=4, max_wait_s=0, max_queue=100))
    assert await within(batcher.submit(list(range(10)))) == [i * 10 for i in range(10)]
    await batcher.stop()
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batcher.depth == 0


async def test_adaptive_wait_adds_no_wait_for_a_lone_client():
    # A fixed wait of LONG would hold each of these requests for LONG: max_batch is never reached.
    recorder = Recorder()
    batcher = await started(DynamicBatcher(recorder, max_batch=64, max_wait_s=LONG, max_queue=100))
    for n in range(5):
        assert await within(batcher.submit([n])) == [n * 10]
    await batcher.stop()
    assert recorder.batches == [[0], [1], [2], [3], [4]]


async def test_adaptive_wait_holds_a_batch_while_answered_callers_are_coming_back():
    recorder = Recorder(delay_s=0.5)  # a forward pass long enough that holding for the rest is worth it
    batcher = await started(DynamicBatcher(recorder, max_batch=64, max_wait_s=LONG, max_queue=100))
    await within(asyncio.gather(*(batcher.submit([n]) for n in range(3))))
    assert batcher.expected == 3  # the three callers just answered
    first = asyncio.ensure_future(batcher.submit([3]))
    for _ in range(10):
        await asyncio.sleep(0)  # the worker runs now and then: with nothing expected it would take [3] alone
    assert recorder.batches == [[0, 1, 2]]
    rest = asyncio.gather(batcher.submit([4]), batcher.submit([5]))
    assert await within(first) == [30] and await within(rest) == [[40], [50]]
    await batcher.stop()
    assert recorder.batches == [[0, 1, 2], [3, 4, 5]]


async def test_the_fixed_wait_does_not_hold_for_callers_coming_back():
    # The adaptive wait would hold [3] for up to one forward pass (2 s) for the three callers just answered.
    recorder = Recorder(delay_s=2.0)
    batcher = await started(DynamicBatcher(recorder, max_batch=64, max_wait_s=0, max_queue=100, wait=FIXED))
    await within(asyncio.gather(*(batcher.submit([n]) for n in range(3))))
    first = asyncio.ensure_future(batcher.submit([3]))
    began = time.monotonic()
    while len(recorder.batches) < 2 and time.monotonic() - began < 1.5:  # the batch starts in the model thread
        await asyncio.sleep(0.01)
    assert recorder.batches == [[0, 1, 2], [3]]
    await within(asyncio.gather(first, batcher.submit([4]), batcher.submit([5])))
    await batcher.stop()
    assert recorder.batches == [[0, 1, 2], [3], [4, 5]]


async def test_adaptive_wait_holds_no_longer_than_a_forward_pass_for_callers_who_do_not_come_back():
    recorder = Recorder(delay_s=0.5)
    batcher = await started(DynamicBatcher(recorder, max_batch=64, max_wait_s=0.001, max_queue=100))
    answered = asyncio.gather(*(batcher.submit([n]) for n in range(3)))
    await asyncio.sleep(0.1)
    late = asyncio.ensure_future(batcher.submit([3]))  # a new caller, while the forward pass runs
    await within(answered)
    for _ in range(10):
        await asyncio.sleep(0)
    assert recorder.batches == [[0, 1, 2]]  # [3] is held for the three callers just answered
    assert await within(late) == [30]  # none of them came back: after about one forward pass, it ran
    await batcher.stop()
    assert recorder.batches == [[0, 1, 2], [3]]
    assert batcher.expected == 1  # the three who stayed away were forgotten; [3]'s caller was just answered


async def test_expected_callers_who_stay_away_for_a_whole_hold_are_forgotten():
    batcher = await started(DynamicBatcher(Recorder(delay_s=0.2), max_batch=64, max_wait_s=0.01, max_queue=100))
    await within(asyncio.gather(*(batcher.submit([n]) for n in range(3))))
    assert batcher.expected == 3
    await asyncio.sleep(1.0)  # the worker's 0.2 s timer comes due first, on this same event loop
    assert batcher.expected == 0
    await batcher.stop()


async def test_adaptive_wait_runs_a_full_batch_without_waiting_for_the_rest():
    recorder = Recorder(delay_s=0.5)
    batcher = await started(DynamicBatcher(recorder, max_batch=4, max_wait_s=LONG, max_queue=100))
    await within(asyncio.gather(*(batcher.submit([n]) for n in range(4))))
    assert batcher.expected == 4
    pending = asyncio.gather(batcher.submit([4, 5]), batcher.submit([6, 7]))
    await asyncio.sleep(0.1)  # well inside the 0.5 s a hold could last
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    await within(pending)
    await batcher.stop()


async def test_adaptive_wait_fills_every_batch_from_closed_loop_clients_that_come_back_staggered():
    recorder = Recorder(delay_s=0.2)
    batcher = await started(DynamicBatcher(recorder, max_batch=8, max_wait_s=LONG, max_queue=100))

    async def client(n: int) -> None:
        for _ in range(4):
            await batcher.submit([n])
            await asyncio.sleep(0.002 * n)  # replies reach the clients at different times

    await within(asyncio.gather(*(client(n) for n in range(8))), 30)
    await batcher.stop()
    assert [len(b) for b in recorder.batches] == [8, 8, 8, 8]


async def test_a_failing_part_of_a_split_request_fails_the_request_and_skips_its_rest():
    calls = []

    def fails_first(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return list(items)

    batcher = await started(DynamicBatcher(fails_first, max_batch=2, max_wait_s=0, max_queue=10))
    with pytest.raises(RuntimeError, match="boom"):
        await within(batcher.submit([1, 2, 3, 4]))
    assert await within(batcher.submit([5])) == [5]
    await batcher.stop()
    assert calls == [[1, 2], [5]]


async def test_a_wrong_number_of_results_fails_the_batch_not_the_worker():
    batcher = await started(DynamicBatcher(lambda items: [], max_batch=4, max_wait_s=0, max_queue=10))
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await within(batcher.submit([1]))
    with pytest.raises(RuntimeError, match="0 results for 2 items"):
        await within(batcher.submit([1, 2]))
    await batcher.stop()


def test_an_unknown_wait_policy_is_refused():
    with pytest.raises(ValueError, match="adaptive, fixed"):
        DynamicBatcher(Recorder(), max_batch=4, max_wait_s=0, max_queue=10, wait="eager")
