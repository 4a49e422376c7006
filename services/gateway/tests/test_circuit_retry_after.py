"""An open circuit says when it will take a request again, so the gateway's 503 no_deployment_available carries a
Retry-After (found by bench/rolling_restart.py: while an engine restarted, clients got a bare 503 for the whole
cool-down and retried at once, hundreds of times). The end-to-end check is tests/reliability/test_engine_restart.py."""

from __future__ import annotations

from services.gateway.routing import CircuitBreaker


def test_retry_after_counts_down_the_cool_down() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, cooldown_s=30, clock=lambda: now[0])
    assert breaker.retry_after_s() == 0.0  # closed: go now
    breaker.record_failure()
    assert breaker.retry_after_s() == 30.0
    now[0] = 12.5
    assert breaker.retry_after_s() == 17.5
    now[0] = 30.0
    assert breaker.retry_after_s() == 0.0  # half-open: the next request is the probe
    assert breaker.allow()
    assert breaker.retry_after_s() == 1.0  # the probe is out; it decides shortly
    breaker.record_success()
    assert breaker.retry_after_s() == 0.0
