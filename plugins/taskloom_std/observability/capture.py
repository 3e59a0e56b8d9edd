"""Task output capture (the ``capture`` plugin): what a task body prints and logs, per attempt.

With ``[taskloom.capture] enabled = true`` (the CLI's default) every attempt's writes to
``sys.stdout`` / ``sys.stderr`` and the ``logging`` records emitted while its body runs are
kept, up to ``limit`` characters per attempt (default 64 KiB; what is cut is counted, and the
kept text ends with a line saying how much was dropped). The text is handed to the store
(``store.record_logs``) when the attempt finishes, so ``taskloom logs RUN`` and ``taskloom
show`` can print it, and is ``attempt.output`` in-process (for ``taskloom_attempt_finish``
observers).

How: a ``ContextVar`` holds the attempt's buffer while its body runs (a wrapper sets it), so
output from other threads and other attempts never mixes in, and asyncio bodies sharing one
event loop thread each write to their own buffer. ``sys.stdout``/``sys.stderr`` are replaced
by a proxy the first time a run with capture starts; a write with no current buffer goes
straight to the original stream. With ``echo = true`` (default for library use) captured
text is also written through to the original stream as it comes; the CLI turns echo off and
prints each task's output itself when the task ends, so lines never interleave mid-line.

Bodies that run in another process are captured there and their text handed back with the
outcome (:class:`Collect`): the ``process`` executor and the ``dask`` executor (taskloom-dask)
do so when the attempt is capturing (:func:`current`). That text reaches the attempt's
buffer, the ``taskloom_attempt_output`` hook and the echo when the attempt ends, not line by
line as it is written; the worker process's root logger is set to this process's level for
the call, so the same records are kept. Output written straight to the file descriptors
(C extensions, subprocesses) is not captured, in any executor.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from taskloom import ConfigError, StashKey, hookimpl

DEFAULT_LIMIT = 64 * 1024


class Buffer:
    """One attempt's captured text, capped at ``limit`` characters; complete lines are
    passed to ``on_lines`` as they are written (the ``taskloom_attempt_output`` hook)."""

    __slots__ = ("chunks", "dropped", "echo", "limit", "on_lines", "open_line", "size")

    def __init__(self, limit: int, echo: bool,
                 on_lines: Callable[[str], None] | None = None) -> None:
        self.chunks: list[str] = []
        self.size = 0
        self.dropped = 0
        self.limit = limit
        self.echo = echo
        self.on_lines = on_lines
        self.open_line = ""

    def write(self, text: str) -> None:
        if self.on_lines is not None:
            pending = self.open_line + text
            cut = pending.rfind("\n") + 1
            self.open_line = pending[cut:]
            if cut:
                self.on_lines(pending[:cut])
        self.keep(text)

    def close(self) -> None:
        """The attempt ended: a line still open is passed on, ended."""
        if self.on_lines is not None and self.open_line:
            line, self.open_line = self.open_line, ""
            self.on_lines(line + "\n")

    def keep(self, text: str) -> None:
        room = self.limit - self.size
        if room >= len(text):
            self.chunks.append(text)
            self.size += len(text)
        else:
            if room > 0:
                self.chunks.append(text[:room])
                self.size += room
            self.dropped += len(text) - max(room, 0)

    def absorb(self, text: str, dropped: int = 0) -> None:
        """Add what a body run elsewhere wrote (``dropped``: characters it did not keep),
        as if written here: kept, passed on as lines, echoed."""
        self.write(text)
        self.dropped += dropped
        self.close()
        if self.echo and text:
            out = sys.stdout
            (out.original if isinstance(out, _Stream) else out).write(text)

    def text(self) -> str:
        kept = "".join(self.chunks)
        if self.dropped:
            if kept and not kept.endswith("\n"):
                kept += "\n"
            kept += f"[{self.dropped} more characters not kept: capture limit {self.limit}]\n"
        return kept


#: ``Attempt.stash``: the attempt's buffer once its body ran under capture.
BUFFER: StashKey[Buffer] = StashKey()

_current: contextvars.ContextVar[Buffer | None] = contextvars.ContextVar(
    "taskloom_capture", default=None
)


class _Stream(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr``: routes a write to the current attempt's
    buffer, or to the original stream when no attempt is capturing in this context."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        buf = _current.get()
        if buf is None:
            return self.original.write(text)
        buf.write(text)
        if buf.echo:
            self.original.write(text)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class _Records(logging.Handler):
    """Adds log records emitted inside a capturing attempt to its buffer."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        buf = _current.get()
        if buf is None or record.name.startswith("taskloom"):
            return
        try:
            buf.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def current() -> Buffer | None:
    """The buffer of the attempt capturing in this context, or None: an executor that runs
    the body elsewhere asks, collects there (:class:`Collect`) and hands the text to
    :meth:`Buffer.absorb`."""
    return _current.get()


class Collect:
    """Capture what a body prints and logs in a worker process: ``with Collect(limit, level)
    as out: body()``, then ``out.result()`` is ``(text, dropped)`` to send back.

    Routed like local capture (the stream proxies and a ``ContextVar``), so bodies on other
    threads of a shared worker (Dask) keep their own text. ``level``, when given, is the
    submitting process's root logger level, applied here for the call (a worker process of
    its own; a shared worker keeps its logging configuration: pass None).
    """

    def __init__(self, limit: int, level: int | None = None) -> None:
        self.buf = Buffer(limit, False)
        self.level = level
        self._token: contextvars.Token[Buffer | None] | None = None
        self._saved_level: int | None = None

    def __enter__(self) -> Collect:
        _install()
        if self.level is not None:
            root = logging.getLogger()
            self._saved_level = root.level
            root.setLevel(self.level)
        self._token = _current.set(self.buf)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
        if self._saved_level is not None:
            logging.getLogger().setLevel(self._saved_level)

    def result(self) -> tuple[str, int]:
        return "".join(self.buf.chunks), self.buf.dropped


def request() -> tuple[int, int] | None:
    """What a worker process needs to collect for the current attempt: ``(characters still
    allowed, root logger level)``, or None when the attempt is not capturing."""
    buf = _current.get()
    if buf is None:
        return None
    return max(buf.limit - buf.size, 0), logging.getLogger().getEffectiveLevel()


_install_lock = threading.Lock()
_HANDLER = _Records()


def _install() -> None:
    """Put the stream proxies and the log handler in place. Checked per run: something else
    (a test runner, an application) may have replaced ``sys.stdout`` since the last run."""
    with _install_lock:
        if not isinstance(sys.stdout, _Stream):
            sys.stdout = _Stream(sys.stdout)
        if not isinstance(sys.stderr, _Stream):
            sys.stderr = _Stream(sys.stderr)
        root = logging.getLogger()
        if _HANDLER not in root.handlers:
            root.addHandler(_HANDLER)


class _Wrapper:
    """Runs an attempt with its own buffer current."""

    __slots__ = ("echo", "limit")

    def __init__(self, limit: int, echo: bool) -> None:
        self.limit, self.echo = limit, echo

    def _begin(self, attempt: Any) -> tuple[Buffer, contextvars.Token[Buffer | None]]:
        run = attempt.run
        on_lines = None
        if run.plugins.pm.hook.taskloom_attempt_output.get_hookimpls():
            hook = run.plugins.hook.taskloom_attempt_output

            def on_lines(text: str) -> None:
                hook(task=attempt.task, attempt=attempt, text=text, run=run)

        buf = Buffer(self.limit, self.echo, on_lines)
        attempt.stash[BUFFER] = buf
        return buf, _current.set(buf)

    def __call__(self, call: Any, attempt: Any) -> Any:
        buf, token = self._begin(attempt)
        try:
            return call()
        finally:
            _current.reset(token)
            buf.close()

    async def acall(self, acall: Any, attempt: Any) -> Any:
        buf, token = self._begin(attempt)
        try:
            return await acall()
        finally:
            _current.reset(token)
            buf.close()


def settings(config: Mapping[str, Any]) -> tuple[bool, int, bool]:
    """``(enabled, limit, echo)`` from ``[taskloom.capture]``."""
    section = config.get("capture") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"[taskloom.capture] must be a table, got {section!r}")
    enabled = section.get("enabled", False)
    limit = section.get("limit", DEFAULT_LIMIT)
    echo = section.get("echo", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"capture.enabled: expected true or false, got {enabled!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 1 << 30:
        raise ConfigError(f"capture.limit: expected a number of bytes 0..1073741824, got {limit!r}")
    if not isinstance(echo, bool):
        raise ConfigError(f"capture.echo: expected true or false, got {echo!r}")
    return enabled, limit, echo


#: ``Run.stash``: the run's wrapper (or None), worked out once per run from its config.
WRAPPER: StashKey[_Wrapper | None] = StashKey()


@hookimpl
def taskloom_register(registry: Any) -> None:
    from taskloom.kernel.schema import Key

    registry.add_config_section("capture", {
        "enabled": Key(("boolean",), "keep what task bodies print and log, per attempt"),
        "limit": Key(("integer",), "most characters kept per attempt (default 65536)",
                     minimum=0),
        "echo": Key(("boolean",), "also write captured output through as it comes"),
    })


@hookimpl
def taskloom_configure(config: Any) -> None:
    settings(config)  # a bad section is a configuration error, before any run


@hookimpl(tryfirst=True)
def taskloom_run_wrappers(run: Any) -> Any:
    enabled, limit, echo = settings(run.plugins.config)
    wrapper = _Wrapper(limit, echo) if enabled else None
    run.stash[WRAPPER] = wrapper
    if enabled:
        _install()
    return wrapper


@hookimpl(tryfirst=True)
def taskloom_attempt_finish(task: Any, attempt: Any, error: Any, run: Any) -> None:
    if run.stash.get(WRAPPER, None) is None:
        return  # capture is off for this run: no attempt has a buffer (nor needs a stash made)
    buf = attempt.stash_get(BUFFER, None)
    if buf is None or not (buf.size or buf.dropped):
        return
    attempt.output = text = buf.text()
    record = getattr(getattr(run.engine, "store", None), "record_logs", None)
    if record is not None:
        record(run.id, task.name, attempt.number, text)
