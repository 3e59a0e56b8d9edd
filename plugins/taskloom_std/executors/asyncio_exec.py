"""Runs ``async def`` task bodies natively on one event loop thread, thousands at once.

``max_workers`` (default 1000) caps the coroutines in flight. Sync bodies are accepted and
run in a small thread pool (``sync_workers``) through ``loop.run_in_executor`` so they never
block the loop; a sync body that returns an awaitable has it awaited on the loop.

Cancelling an attempt (task cancel, run cancel, soft timeout) cancels its coroutine: the
body sees :class:`asyncio.CancelledError` at its next ``await``. Wrappers with an ``acall``
method run on the loop; a wrapper without one runs in the thread pool around a call that
waits for the inner coroutine, so any wrapper works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from taskloom import Executor, TaskCancelled

AsyncCall = Callable[[], Awaitable[Any]]


class AsyncioExecutor(Executor):
    name = "asyncio"
    native_async = True

    def __init__(self, max_workers: int | None = None, sync_workers: int | None = None) -> None:
        super().__init__(max_workers)
        if sync_workers is not None and (not isinstance(sync_workers, int) or sync_workers < 1):
            raise ValueError(f"sync_workers must be a positive integer, got {sync_workers!r}")
        self._sync_workers = sync_workers or Executor.default_workers()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._start_lock = threading.Lock()
        # Per attempt: its main asyncio task and any inner tasks started for sync wrappers.
        self._tasks: dict[Any, list[Any]] = {}

    @staticmethod
    def default_workers() -> int:
        return 1000

    # -- the loop thread ---------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                t = threading.Thread(
                    target=self._serve, args=(loop, ready), name="taskloom-asyncio", daemon=True
                )
                t.start()
                ready.wait()
                self._thread = t
                self._loop = loop
            return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._thread_id = threading.get_ident()
        loop.call_soon(ready.set)
        loop.run_forever()

    def _sync_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            with self._start_lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self._sync_workers, thread_name_prefix="taskloom-asyncio-sync"
                    )
        return self._pool

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._ensure_loop()
        if threading.get_ident() == self._thread_id:
            loop.call_soon(fn, *args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    # -- the executor contract ---------------------------------------------------------------
    def start(self, run: Any) -> None:
        self._ensure_loop()

    def submit(self, attempt: Any) -> None:
        self._soon(self._begin, attempt)

    def cancel(self, attempt: Any) -> None:
        if self._loop is not None:
            self._soon(self._cancel, attempt)

    def _begin(self, attempt: Any) -> None:
        if attempt.token.cancelled:
            attempt.done(None, _cancelled(attempt))
            return
        loop = self._loop
        assert loop is not None
        self._tasks[attempt] = [loop.create_task(self._run(attempt))]

    def _cancel(self, attempt: Any) -> None:
        for fut in self._tasks.get(attempt, ()):
            fut.cancel()

    async def _run(self, attempt: Any) -> None:
        error: BaseException | None = None
        try:
            value = await self._chain(attempt)()
        except asyncio.CancelledError:
            value, error = None, _cancelled(attempt)
        except BaseException as exc:
            value, error = None, exc
        finally:
            self._tasks.pop(attempt, None)
        attempt.done(value, error)

    def _chain(self, attempt: Any) -> AsyncCall:
        fn: AsyncCall = lambda: self._body(attempt)  # noqa: E731
        for w in reversed(attempt.plan.wrappers):
            fn = self._wrapped(w, fn, attempt)
        return fn

    def _wrapped(self, wrapper: Any, inner: AsyncCall, attempt: Any) -> AsyncCall:
        acall = getattr(wrapper, "acall", None)
        if acall is not None:
            return lambda: acall(inner, attempt)

        async def bridged() -> Any:
            loop = asyncio.get_running_loop()

            def call_inner() -> Any:
                fut = asyncio.run_coroutine_threadsafe(_as_coro(inner), loop)
                loop.call_soon_threadsafe(self._track, attempt, fut)
                return fut.result()

            ctx = contextvars.copy_context()
            return await loop.run_in_executor(
                self._sync_pool(), ctx.run, wrapper, call_inner, attempt
            )

        return bridged

    def _track(self, attempt: Any, fut: Any) -> None:
        tasks = self._tasks.get(attempt)
        if tasks is None or attempt.token.cancelled:
            fut.cancel()
        else:
            tasks.append(fut)

    async def _body(self, attempt: Any) -> Any:
        plan = attempt.plan
        body = plan.body
        if body is None:
            return None
        if plan.is_async:
            if plan.deps or plan.wants_context:
                return await body(**attempt.kwargs())
            return await body()
        loop = asyncio.get_running_loop()
        # The pool thread runs in this task's context: a wrapper's span stays current.
        ctx = contextvars.copy_context()
        value = await loop.run_in_executor(self._sync_pool(), ctx.run, attempt.invoke)
        if inspect.isawaitable(value):
            value = await value
        return value

    def shutdown(self, wait: bool = True) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop, loop)
            if wait and thread is not None and thread is not threading.current_thread():
                thread.join()
                loop.close()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _stop(self, loop: asyncio.AbstractEventLoop) -> None:
        for futures in list(self._tasks.values()):
            for fut in futures:
                fut.cancel()
        # One more turn lets the cancelled coroutines report before the loop stops.
        loop.call_soon(loop.stop)


def _cancelled(attempt: Any) -> TaskCancelled:
    return TaskCancelled(f"task {attempt.task.name!r} {attempt.token.reason or 'cancelled'}")


async def _as_coro(call: AsyncCall) -> Any:
    return await call()
