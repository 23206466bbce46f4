"""Retry timing: exponential backoff with jitter, per ERP target (``[targets.X.retry]``)."""

from __future__ import annotations

import random

from gateway.config import RetryPolicy


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after ``attempt`` failures (``attempt`` ≥ 1).

    The base delay grows ``first_delay_s * factor**(attempt-1)`` up to ``cap_s``; a ``jitter``
    share of it is drawn at random ("equal jitter") so that many workers retrying after one outage
    do not call the ERP in lock-step, while no delay falls below ``(1 - jitter) * base``.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    base = min(policy.cap_s, policy.first_delay_s * policy.factor ** (attempt - 1))
    r = (rng or random).random()
    return base * (1 - policy.jitter) + base * policy.jitter * r


def exhausted(policy: RetryPolicy, attempts_made: int) -> bool:
    """True when ``attempts_made`` attempts have used up the policy."""
    return attempts_made >= policy.max_attempts
