"""The sans-I/O engine: batching, pacing and retry decisions on a fake clock (no sleeps)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbistream.client.engine import (
    JUMP_SPREAD,
    Batch,
    Engine,
    Outcome,
    Pacer,
    Send,
    SequenceCounter,
    ServerHints,
    Take,
    Verdict,
    Wait,
)
from pbistream.client.options import BatchOptions, PacingOptions, RetryOptions
from pbistream.exceptions import ConfigError


def make_engine(**pacing: object) -> Engine:
    return Engine(
        batch=BatchOptions(max_rows=100, max_delay=1.0),
        pacing=PacingOptions(**pacing),  # type: ignore[arg-type]
        retry=RetryOptions(backoff_base=1.0, max_backoff=8.0),
        rng=random.Random(7),
    )


def send_one(engine: Engine, now: float, rows: int = 1) -> Batch:
    action = engine.poll(now, buffered=rows, oldest_at=now - 10, flushing=True)
    assert isinstance(action, Take), action
    batch = Batch(b"[]", min(rows, action.max_rows), seq=1)
    engine.start(batch)
    sent = engine.poll(now, buffered=0, oldest_at=None)
    assert isinstance(sent, Send)
    return sent.batch


def test_idle_engine_waits_forever() -> None:
    assert make_engine().poll(0.0, buffered=0, oldest_at=None) == Wait(math.inf)


def test_linger_then_take() -> None:
    engine = make_engine()
    assert engine.poll(0.2, buffered=5, oldest_at=0.0) == Wait(pytest.approx(0.8))
    assert engine.poll(1.0, buffered=5, oldest_at=0.0) == Take(100)


def test_full_batch_or_flush_skips_the_linger() -> None:
    engine = make_engine()
    assert engine.poll(0.0, buffered=100, oldest_at=0.0) == Take(100)
    assert engine.poll(0.0, buffered=3, oldest_at=0.0, flushing=True) == Take(100)


def test_no_more_than_120_posts_in_any_minute() -> None:
    engine = make_engine(safety=0.0)
    now = 0.0
    sent_at: list[float] = []
    while len(sent_at) < 360:
        action = engine.poll(now, buffered=1, oldest_at=now - 5, flushing=True)
        if isinstance(action, Wait):
            now += action.seconds
            continue
        assert isinstance(action, Take)
        engine.start(Batch(b"[]", 1, seq=len(sent_at)))
        assert isinstance(engine.poll(now, buffered=0, oldest_at=None), Send)
        sent_at.append(now)
        assert engine.on_response(now, Outcome(200))[0] is Verdict.DELIVERED
    for start in sent_at:
        assert sum(1 for t in sent_at if start <= t < start + 60.0) <= 120
    assert sent_at[-1] >= 120.0  # 360 posts need at least two full minutes


def test_time_scale_shrinks_the_window() -> None:
    pacer = Pacer(PacingOptions(time_scale=60.0, safety=0.0))
    for i in range(120):
        pacer.record(i / 1000, 1)
    assert pacer.delay(0.2) == pytest.approx(1.0 - 0.2)
    assert pacer.delay(1.0) == 0.0


def test_rows_per_hour_quota_limits_the_batch_size() -> None:
    pacer = Pacer(PacingOptions(rows_per_hour=1000, safety=0.0))
    pacer.record(0.0, 990)
    assert pacer.rows_available(1.0) == 10
    assert pacer.delay(1.0, rows=10) == 0.0
    assert pacer.delay(1.0, rows=11) == pytest.approx(3599.0)
    engine = make_engine(rows_per_hour=1000, safety=0.0)
    engine.pacer.record(0.0, 990)
    assert engine.poll(1.0, buffered=50, oldest_at=0.0, flushing=True) == Take(10)


def test_large_table_hourly_post_limit() -> None:
    pacer = Pacer(PacingOptions(safety=0.0), table_rows=250_000)
    for i in range(120):
        pacer.record(float(i), 1)
    # The per-minute window has room at t=200, the hourly one does not.
    assert pacer.delay(200.0) == pytest.approx(3600.0 - 200.0)


def test_pacing_off_never_waits() -> None:
    pacer = Pacer(PacingOptions(enabled=False))
    for _ in range(1000):
        pacer.record(0.0, 10_000)
    assert pacer.delay(0.0, 10_000) == 0.0


def test_backoff_is_capped_full_jitter_and_honours_retry_after() -> None:
    engine = make_engine()
    batch = send_one(engine, 0.0)
    delays = []
    now = 0.0
    for attempt in range(1, 8):
        verdict, delay = engine.on_response(now, Outcome(503, message="busy"))
        assert verdict is Verdict.RETRY
        assert 0.0 <= delay <= min(8.0, 2.0 ** (attempt - 1))
        delays.append(delay)
        assert engine.poll(now, buffered=0, oldest_at=None) == Wait(pytest.approx(delay))
        now += delay
        assert engine.poll(now, buffered=0, oldest_at=None) == Send(batch)
    assert batch.attempts == 8
    verdict, delay = engine.on_response(now, Outcome(429, retry_after=42.0))
    assert verdict is Verdict.RETRY and delay == 42.0
    assert len(set(delays)) > 1  # jittered, not fixed


def test_network_errors_retry_and_4xx_is_final() -> None:
    engine = make_engine()
    send_one(engine, 0.0)
    assert engine.on_response(0.0, Outcome(None, message="reset"))[0] is Verdict.RETRY
    engine.poll(100.0, buffered=0, oldest_at=None)
    assert engine.on_response(100.0, Outcome(400, message="bad"))[0] is Verdict.REJECTED
    assert engine.current is None


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_credential_is_final_unless_retry_auth(status: int) -> None:
    engine = make_engine()
    send_one(engine, 0.0)
    assert engine.on_response(0.0, Outcome(status))[0] is Verdict.REJECTED
    held = Engine(
        batch=BatchOptions(),
        pacing=PacingOptions(enabled=False),
        retry=RetryOptions(retry_auth=True),
    )
    send_one(held, 0.0)
    assert held.on_response(0.0, Outcome(status))[0] is Verdict.RETRY
    assert held.current is not None


def test_gives_up_after_max_attempts() -> None:
    engine = Engine(
        batch=BatchOptions(),
        pacing=PacingOptions(enabled=False),
        retry=RetryOptions(max_attempts=2, backoff_base=0.1),
    )
    send_one(engine, 0.0)
    assert engine.on_response(0.0, Outcome(500))[0] is Verdict.RETRY
    assert isinstance(engine.poll(10.0, buffered=0, oldest_at=None), Send)
    assert engine.on_response(10.0, Outcome(500))[0] is Verdict.GAVE_UP


def test_sequence_numbers_grow_even_when_the_clock_goes_back() -> None:
    counter = SequenceCounter(last=5_000_000_000_000_000)
    first = counter.next(1.0)
    assert first == 5_000_000_000_000_001
    assert counter.next(0.5) == first + 1
    fresh = SequenceCounter()
    assert fresh.next(1000.0) == 1_000_000_000


def test_options_reject_nonsense() -> None:
    with pytest.raises(ConfigError, match="max_rows"):
        BatchOptions(max_rows=10_001)
    with pytest.raises(ConfigError, match="time_scale"):
        PacingOptions(time_scale=0)
    with pytest.raises(ConfigError):
        RetryOptions(backoff_base=-1)


def test_a_post_is_dated_by_its_answer_so_latency_cannot_squeeze_the_window() -> None:
    engine = make_engine(safety=0.0, posts_per_minute=2)
    send_one(engine, 0.0)
    engine.on_response(5.0, Outcome(200))  # the answer took 5 s: the server counted it
    send_one(engine, 5.0)  # somewhere in [0, 5]; we assume 5
    engine.on_response(5.1, Outcome(200))
    assert engine.poll(60.0, buffered=1, oldest_at=0.0, flushing=True) == Wait(pytest.approx(5.0))
    assert engine.poll(65.0, buffered=1, oldest_at=0.0, flushing=True) == Take(100)


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False), st.floats(0.0, 3.0))
def test_server_never_counts_more_than_120_a_minute_whatever_the_latency(
    rnd: random.Random, max_latency: float
) -> None:
    """The server counts each POST at an unknown moment between send and answer."""
    engine = make_engine(safety=0.0)
    now = 0.0
    counted: list[float] = []
    while len(counted) < 300:
        action = engine.poll(now, buffered=1, oldest_at=now - 5, flushing=True)
        if isinstance(action, Wait):
            now += action.seconds
            continue
        assert isinstance(action, Take)
        engine.start(Batch(b"[]", 1, seq=len(counted)))
        assert isinstance(engine.poll(now, buffered=0, oldest_at=None), Send)
        answer = now + rnd.uniform(0.0, max_latency)
        counted.append(rnd.uniform(now, answer))
        now = answer
        engine.on_response(now, Outcome(200))
    counted.sort()
    for i in range(len(counted) - 120):
        assert counted[i + 120] - counted[i] >= 60.0 - 1e-9


def _drive(engine: Engine, *, hours: float, rate: float, latency: float = 0.05) -> list[int]:
    """A producer of ``rate`` rows/s for ``hours``; returns the batch sizes sent."""
    now, taken, sizes = 0.0, 0, []
    while now < hours * 3600:
        buffered = int(now * rate) - taken
        action = engine.poll(now, buffered=buffered, oldest_at=(taken + 1) / rate)
        if isinstance(action, Wait):
            # Wake when the wait ends, the batch fills up, or (empty) the next row comes.
            step = action.seconds
            if buffered < engine.cap():
                step = min(step, (engine.cap() - buffered) / rate)
            if buffered <= 0:
                step = min(step, (taken + 1) / rate - now)
            now += max(1e-6, step + 1e-6)
            continue
        if isinstance(action, Take):
            rows = min(action.max_rows, buffered)
            taken += rows
            engine.start(Batch(b"", rows, seq=taken))
            continue
        now += latency
        sizes.append(action.batch.rows)
        engine.on_response(now, Outcome(200))
    return sizes


def test_posts_are_spent_so_the_row_quota_is_used_past_250000_rows() -> None:
    """333 rows/s (the issue's 20,000 rows/s at time scale 60): 2 hours store 2,000,000."""
    engine = Engine(batch=BatchOptions(), pacing=PacingOptions(), retry=RetryOptions())
    sizes = _drive(engine, hours=2, rate=333.0)
    assert sum(sizes) >= 0.99 * 2_000_000
    # Planned before the table got large: never more than 120 POSTs in any hour after.
    assert len(sizes) <= 2 * 120 + 25


def test_a_slow_producer_is_not_held_back_by_the_planning() -> None:
    engine = Engine(batch=BatchOptions(max_delay=0.5), pacing=PacingOptions(), retry=RetryOptions())
    assert engine.poll(0.0, buffered=1, oldest_at=0.0) == Wait(0.5)
    assert engine.poll(0.5, buffered=1, oldest_at=0.0) == Take(10_000)
    assert engine.pacer.floor_rows(10_000) == 139 and not engine.pacer.plan_large


def test_a_large_table_spaces_partial_batches_and_keeps_quota_batches_large() -> None:
    pacer = Pacer(PacingOptions(safety=0.0), table_rows=250_000)
    assert pacer.spacing() == pytest.approx(30.0)
    assert pacer.floor_rows(10_000) == 8_334
    pacer.row_limited = False  # a Streaming dataset: posts are the only limit
    assert pacer.floor_rows(150) == 150


def test_a_streaming_dataset_never_gets_the_large_table_hourly_limit() -> None:
    pacer = Pacer(PacingOptions(safety=0.0), table_rows=300_000)
    assert pacer.large and pacer.spacing() == pytest.approx(30.0)
    pacer.adopt(ServerHints(mode="Streaming"))
    assert not pacer.large and not pacer.plan_large
    assert pacer.spacing() == pytest.approx(0.5)


def test_server_hints_change_the_windows_and_the_row_limit() -> None:
    pacer = Pacer(PacingOptions(safety=0.0))
    assert pacer.adopt(ServerHints(time_scale=60.0, limits=True, mode="Streaming"))
    assert pacer.minute_window == pytest.approx(1.0) and not pacer.row_limited
    assert pacer.rows_available(0.0) > 10**12
    assert not pacer.adopt(ServerHints(time_scale=60.0))


def test_rows_skipped_as_old_are_resequenced_on_a_first_send_or_delivered_on_a_retry() -> None:
    counter = SequenceCounter(100)
    engine = Engine(
        batch=BatchOptions(), pacing=PacingOptions(), retry=RetryOptions(), sequence=counter
    )
    engine.start(Batch(b"[]", 3, seq=counter.next(0.0)))
    assert isinstance(engine.poll(0.0, buffered=0, oldest_at=None), Send)
    verdict, _ = engine.on_response(0.1, Outcome(200, ignored=3, sequence_last=5_000))
    assert verdict is Verdict.RESEQUENCED and engine.current is not None
    jumped = engine.current.seq
    assert 5_000 < jumped == counter.last <= 5_000 + JUMP_SPREAD
    sent = engine.poll(0.2, buffered=0, oldest_at=None)
    assert isinstance(sent, Send) and sent.batch.seq == jumped
    # The server had it after all (an answer lost): a retry skipped as old is delivered.
    assert engine.on_response(0.3, Outcome(503))[0] is Verdict.RETRY
    sent = engine.poll(10.0, buffered=0, oldest_at=None)
    assert isinstance(sent, Send)
    verdict, _ = engine.on_response(10.1, Outcome(200, ignored=3, sequence_last=jumped))
    assert verdict is Verdict.DELIVERED


def test_a_resent_batch_skipped_again_by_another_producers_equal_number_is_resent_again() -> None:
    # Two producers skipped at the same table number both jump past it; the one whose
    # resend the server skips again (the other took that number) never had it stored.
    counter = SequenceCounter(100)
    engine = Engine(
        batch=BatchOptions(), pacing=PacingOptions(), retry=RetryOptions(), sequence=counter
    )
    engine.start(Batch(b"[]", 3, seq=counter.next(0.0)))
    assert isinstance(engine.poll(0.0, buffered=0, oldest_at=None), Send)
    verdict, _ = engine.on_response(0.1, Outcome(200, ignored=3, sequence_last=5_000))
    assert verdict is Verdict.RESEQUENCED and engine.current is not None
    taken = engine.current.seq  # the number the other producer stored first
    sent = engine.poll(0.2, buffered=0, oldest_at=None)
    assert isinstance(sent, Send) and sent.batch.seq == taken
    verdict, _ = engine.on_response(0.3, Outcome(200, ignored=3, sequence_last=taken))
    assert verdict is Verdict.RESEQUENCED, "rows the server never stored counted as delivered"
    assert engine.current is not None and engine.current.seq > taken


def test_producers_skipped_at_one_number_jump_to_different_numbers() -> None:
    # Numbers that collide after a jump make a lost answer indistinguishable from
    # another producer's store; a spread keeps them apart.
    jumped = set()
    for seed in range(20):
        counter = SequenceCounter(100)
        engine = Engine(
            batch=BatchOptions(),
            pacing=PacingOptions(),
            retry=RetryOptions(),
            sequence=counter,
            rng=random.Random(seed),
        )
        engine.start(Batch(b"[]", 1, seq=counter.next(0.0)))
        engine.poll(0.0, buffered=0, oldest_at=None)
        engine.on_response(0.1, Outcome(200, ignored=1, sequence_last=5_000))
        assert engine.current is not None and engine.current.seq > 5_000
        jumped.add(engine.current.seq)
    assert len(jumped) > 10
