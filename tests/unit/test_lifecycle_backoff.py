"""The restart schedule (emulator.supervisor.policy.on_failure) on a simulated timeline: defaults 1 s
doubling to 5 min, giving up after 7 days, reset after a stable period."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emulator.models import BackoffPolicy
from emulator.supervisor import policy

DEFAULTS = BackoffPolicy()


def crash_loop(backoff: BackoffPolicy, failures: int, start_s: float = 1.0) -> list[float | None]:
    """Each failure happens ``start_s`` after its restart; the delays chosen, None once it gave up."""
    now, restarts, first = 1000.0, 0, None
    delays: list[float | None] = []
    for _ in range(failures):
        plan = policy.on_failure(restarts, first, ready_at=None, now=now, backoff=backoff)
        if plan.next_retry_at is None:
            delays.append(None)
            break
        delays.append(plan.next_retry_at - now)
        restarts, first = plan.restarts + 1, plan.first_failure_at
        now = plan.next_retry_at + start_s
    return delays


def test_defaults_are_1s_doubling_to_5_minutes_giving_up_after_7_days_reset_after_60s() -> None:
    assert (DEFAULTS.initialDelayS, DEFAULTS.factor, DEFAULTS.maxDelayS) == (1, 2, 300)
    assert DEFAULTS.giveUpAfterS == 7 * 86400 and DEFAULTS.resetAfterS == 60
    assert crash_loop(DEFAULTS, 12) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_the_loop_gives_up_after_give_up_after_s() -> None:
    delays = crash_loop(DEFAULTS, 3000)
    assert delays[-1] is None
    spent = sum(d + 1 for d in delays[:-1] if d is not None)
    assert 7 * 86400 <= spent < 7 * 86400 + 301
    short = crash_loop(BackoffPolicy(initialDelayS=1, factor=2, maxDelayS=4, giveUpAfterS=10), 20, start_s=0)
    assert short == [0, 1, 2, 4, 4, None]


def test_a_worker_ready_for_reset_after_s_starts_a_new_loop() -> None:
    plan = policy.on_failure(5, first_failure_at=100.0, ready_at=200.0, now=259.0, backoff=DEFAULTS)
    assert plan.restarts == 5 and plan.next_retry_at == 259.0 + 16
    plan = policy.on_failure(5, first_failure_at=100.0, ready_at=200.0, now=260.0, backoff=DEFAULTS)
    assert plan.restarts == 0 and plan.next_retry_at == 260.0 and plan.first_failure_at == 260.0
    assert plan.note == "restarting now"


@given(
    st.floats(0.1, 100),
    st.floats(1, 10),
    st.floats(0.1, 1000),
    st.integers(0, 200),
)
def test_delays_never_shrink_within_a_loop_and_never_pass_the_cap(
    initial: float, factor: float, cap: float, n: int
) -> None:
    backoff = BackoffPolicy(initialDelayS=initial, factor=factor, maxDelayS=cap)
    delays = [policy.restart_delay_s(i, backoff) for i in range(n + 2)]
    assert delays[0] == 0
    assert all(a <= b for a, b in zip(delays, delays[1:], strict=False))
    assert all(d <= cap for d in delays)
