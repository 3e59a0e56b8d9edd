"""The real clock reads the system's clocks directly and satisfies the Clock protocol."""

from __future__ import annotations

import time
from datetime import timezone

from taskloom.kernel.clock import Clock, SystemClock


def test_system_clock_reads_the_system_clocks() -> None:
    clock: Clock = SystemClock()
    before_wall, before_mono = time.time(), time.monotonic()
    wall, mono, now = clock.time(), clock.monotonic(), clock.now()
    after_wall, after_mono = time.time(), time.monotonic()
    assert before_wall <= wall <= after_wall
    assert before_mono <= mono <= after_mono
    assert now.tzinfo is timezone.utc and before_wall <= now.timestamp() <= after_wall + 1e-6
    assert isinstance(wall, float) and isinstance(mono, float)
