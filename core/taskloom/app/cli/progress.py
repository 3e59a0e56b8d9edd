"""Live progress of a run in the terminal.

:class:`ProgressObserver` is a hook implementer the CLI registers on its engine's plugin set
for one run. Its hook only counts and queues (it is called under the run's lock); the
command's main loop draws from the queue, so a slow terminal never slows the run.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from taskloom.kernel.pluginmanager import hookimpl
from taskloom.kernel.states import TaskState

_MARK = {
    TaskState.COMPLETED: ("[green]✓[/]", "completed"),
    TaskState.FAILED: ("[red]✗[/]", "failed"),
    TaskState.SKIPPED: ("[yellow]↷[/]", "skipped"),
    TaskState.CANCELLED: ("[magenta]■[/]", "cancelled"),
    TaskState.RETRYING: ("[cyan]⟳[/]", "retrying"),
    TaskState.RUNNING: ("[blue]▶[/]", "started"),
}


class ProgressObserver:
    """Counts tasks by state and queues transitions for the display."""

    def __init__(self) -> None:
        self.counts: dict[TaskState, int] = {}
        self.events: deque[tuple[Any, TaskState, float]] = deque()

    @hookimpl
    def taskloom_task_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        counts = self.counts
        counts[old] = counts.get(old, 0) - 1
        counts[new] = counts.get(new, 0) + 1
        self.events.append((task, new, time.monotonic()))

    def count(self, state: TaskState) -> int:
        return max(0, self.counts.get(state, 0))


class ProgressView:
    """Draws the counts (a live bar on a terminal) and, when asked, a line per task."""

    def __init__(self, observer: ProgressObserver, total: int, title: str,
                 verbose: int = 0, console: Console | None = None) -> None:
        self.observer = observer
        self.total = total
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal
        # Without a terminal there is no live bar, so finished tasks are listed as they end.
        self.lines = verbose > 0 or not self.live
        self.verbose = verbose
        self._progress: Progress | None = None
        self._bar: Any = None
        self.title = title

    def __enter__(self) -> ProgressView:
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._bar = self._progress.add_task(self.title, total=self.total,
                                                counts=self._counts())
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        if self._progress is not None:
            self._progress.stop()

    def _counts(self) -> str:
        o = self.observer
        text = (f"done {o.count(TaskState.COMPLETED)}/{self.total}  "
                f"running {o.count(TaskState.RUNNING)}  "
                f"failed {o.count(TaskState.FAILED)}")
        for state in (TaskState.SKIPPED, TaskState.CANCELLED):
            if o.count(state):
                text += f"  {state.value} {o.count(state)}"
        return text

    def print(self, text: str) -> None:
        self.console.print(text)

    def update(self) -> None:
        """Draw what happened since the last call."""
        events = self.observer.events
        while events:
            task, new, _ = events.popleft()
            if self.lines and new in _MARK and (new is not TaskState.RUNNING or self.verbose > 1):
                self.console.print(self._line(task, new))
        if self._progress is not None:
            o = self.observer
            final = sum(o.count(s) for s in (TaskState.COMPLETED, TaskState.FAILED,
                                             TaskState.SKIPPED, TaskState.CANCELLED))
            self._progress.update(self._bar, completed=final, counts=self._counts())

    @staticmethod
    def _line(task: Any, new: TaskState) -> str:
        mark, word = _MARK[new]
        line = f"{mark} {task.name} {word}"
        if new is TaskState.COMPLETED and task.duration is not None:
            line += f" in {task.duration:.2f}s"
        elif new is TaskState.RETRYING:
            line += f" after attempt {task.attempts}: {task.error}"
        elif new in (TaskState.FAILED, TaskState.CANCELLED) and task.error:
            line += f": {task.error}"
        return line
