"""Retries with exponential back-off and jitter for transient registry failures."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from layerdiff.errors import SourceError

log = logging.getLogger("layerdiff.registry")

T = TypeVar("T")

#: The longest wait a ``Retry-After`` header can impose.
RETRY_AFTER_MAX = 60.0


class TransientError(Exception):
    """A failure that trying again may cure: a dropped connection, a 5xx, a 429.

    Internal to the registry package: what escapes after the last try is a ``SourceError``.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Backoff:
    """Up to ``retries`` more tries after the first; waits double from ``base`` to ``cap``."""

    retries: int = 5
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """How long to wait before try ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_MAX)
        step = min(self.cap, self.base * 2.0**attempt)
        # Half fixed, half random: many clients failing together spread out, yet each
        # still waits long enough for the server to recover.
        return step / 2 + random.uniform(0, step / 2)

    def run(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, tried again on ``TransientError``; ``SourceError`` naming ``what``
        and the last error when every try failed."""
        tries = self.retries + 1
        done = 0
        while True:
            try:
                return attempt()
            except TransientError as err:
                done += 1
                if done == tries:
                    raise SourceError(
                        f"{what} failed after {tries} attempt{'s' * (tries > 1)}: {err}"
                    ) from None
                wait = self.delay(done - 1, err.retry_after)
                log.info("%s: %s; trying again in %.1f s", what, err, wait)
                time.sleep(wait)
