"""Live progress of a run in the terminal.

:class:`ProgressObserver` is a hook implementer the CLI registers on its engine's plugin set
for one run. Its hook only counts and queues what the event carried (the attempt number, the
error, whether the result came from the cache): it is called under the run's lock, and a
line drawn later from the task's *current* state would describe a later event. The
command's main loop draws from the queue, so a slow terminal never slows the run; only that
loop writes to the console, so lines never interleave.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from typing import Any, NamedTuple

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from taskloom.kernel.pluginmanager import hookimpl
from taskloom.kernel.states import TaskState

_WITH_ERROR = frozenset({TaskState.RETRYING, TaskState.FAILED, TaskState.CANCELLED})

_MARK = {
    TaskState.COMPLETED: ("[green]✓[/]", "completed"),
    TaskState.FAILED: ("[red]✗[/]", "failed"),
    TaskState.SKIPPED: ("[yellow]↷[/]", "skipped"),
    TaskState.CANCELLED: ("[magenta]■[/]", "cancelled"),
    TaskState.RETRYING: ("[cyan]⟳[/]", "retrying"),
    TaskState.RUNNING: ("[blue]▶[/]", "started"),
}


class Event(NamedTuple):
    """One transition as it happened: the values are read when the hook is called.
    ``output`` (with ``state`` None) is what an attempt printed, when it was captured."""

    name: str
    state: TaskState | None
    at: float
    attempt: int
    error: BaseException | None
    served: str | None  # the plugin that supplied the result without running the body
    output: str | None = None


class ProgressObserver:
    """Counts tasks by state and queues transitions for the display."""

    def __init__(self) -> None:
        self.counts: dict[TaskState, int] = {}
        self.events: deque[Event] = deque()
        self.started: dict[str, float] = {}
        self.served: dict[str, str] = {}  # task -> the plugin that served its last attempt

    @hookimpl
    def taskloom_task_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        counts = self.counts
        counts[old] = counts.get(old, 0) - 1
        counts[new] = counts.get(new, 0) + 1
        error = task.exception if new in _WITH_ERROR else None
        served = self.served.pop(task.name, None) if new is TaskState.COMPLETED else None
        self.events.append(Event(task.name, new, time.monotonic(), task.attempts, error, served))

    @hookimpl
    def taskloom_attempt_finish(self, task: Any, attempt: Any, error: Any, run: Any) -> None:
        if attempt.served_by is not None and error is None:
            self.served[task.name] = attempt.served_by

    @hookimpl
    def taskloom_attempt_output(self, task: Any, attempt: Any, text: str, run: Any) -> None:
        self.events.append(Event(task.name, None, time.monotonic(), attempt.number, None,
                                 None, text))

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
                # Task output reaches the terminal through the capture plugin and this view,
                # never through rich's own stdout redirection (which would bypass capture).
                redirect_stdout=False,
                redirect_stderr=False,
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
        events, started = self.observer.events, self.observer.started
        while events:
            event = events.popleft()
            if event.output is not None:
                self._print_output(event)
                continue
            if event.state is TaskState.RUNNING:
                started.setdefault(event.name, event.at)
            if self.lines and event.state in _MARK and (
                event.state is not TaskState.RUNNING or self.verbose > 1
            ):
                self.console.print(self._line(event, started.get(event.name)), markup=True)
        if self._progress is not None:
            o = self.observer
            final = sum(o.count(s) for s in (TaskState.COMPLETED, TaskState.FAILED,
                                             TaskState.SKIPPED, TaskState.CANCELLED))
            self._progress.update(self._bar, completed=final, total=self.total,
                                  counts=self._counts())

    def _print_output(self, event: Event) -> None:
        from rich.markup import escape

        prefix = f"[dim]{escape(event.name)} │[/] "
        for line in event.output.rstrip("\n").splitlines() if event.output else ():
            self.console.print(prefix + escape(line))

    @staticmethod
    def _line(event: Event, started: float | None) -> str:
        assert event.state is not None
        from rich.markup import escape

        mark, word = _MARK[event.state]
        if event.served:
            return f"{mark} {escape(event.name)} completed from the {escape(event.served)}"
        line = f"{mark} {escape(event.name)} {word}"
        if event.state is TaskState.COMPLETED and started is not None:
            line += f" in {event.at - started:.2f}s"
        elif event.state is TaskState.RETRYING:
            line += f" after attempt {event.attempt}: {escape(describe(event.error))}"
        elif event.state in (TaskState.FAILED, TaskState.CANCELLED) and event.error:
            line += f": {escape(describe(event.error))}"
        return line


def describe(error: object) -> str:
    """``Type: message (at file:line)``: the innermost frame is where the body raised."""
    if error is None:
        return ""
    if not isinstance(error, BaseException):
        return str(error)
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    if frames:
        last = frames[-1]
        text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    return text
