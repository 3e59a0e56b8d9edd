"""What an error policy may decide after a failed attempt (``taskloom_task_error``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Retry:
    """Run the task again after ``delay`` seconds (on the engine's timer, never in a worker)."""

    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError(f"Retry delay must be >= 0, got {self.delay}")


@dataclass(frozen=True)
class Fallback:
    """Complete the task with ``value`` instead of failing it."""

    value: Any = None


@dataclass(frozen=True)
class Fail:
    """Fail now; ``error`` replaces the attempt's exception when given."""

    error: BaseException | None = None
