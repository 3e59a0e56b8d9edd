"""The ``dask`` executor: task bodies run on a Dask cluster, the engine stays local.

What runs where:

* on a Dask worker: the task body (``fn`` or an overridden ``execute``) with its dependency
  results as keyword arguments (and a picklable snapshot ``context``, see
  :mod:`taskloom_dask.context`), inside the OpenTelemetry context of the submitting side;
* in this process: the engine (graph, states, hooks, retry and other policies) and the
  task's wrappers (timeout, cache, circuit breaker, tracing). A task with wrappers is driven
  by a dispatcher thread that runs the wrappers around "submit to Dask and wait for the
  result", so a cache hit never reaches the cluster and a span a wrapper opens is the parent
  of the spans on the worker.

What a body prints and logs on the worker is captured there when the attempt captures its
output (the ``capture`` plugin, a wrapper: such attempts take the dispatcher path) and handed
back with its outcome; the worker's own logging level applies.

Tasks without wrappers cost no local thread while they run: a finished future is queued,
and one collector thread fetches the results of whatever finished meanwhile in one request
(on the client's event loop, without waiting for it) and reports them to the engine.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import distributed
from dask.utils import funcname
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from taskloom import Attempt, Executor, Run
from taskloom_dask.context import RemoteContext
from taskloom_dask.errors import NotSerializableError
from taskloom_dask.remote import OUTPUT_ATTRIBUTE, Captured, run_remote
from taskloom_std.observability import capture

log = logging.getLogger("taskloom.dask")

#: In-flight attempts per worker thread, and the least in flight, when max_workers is unset.
OVERSUBSCRIBE = 4
MIN_IN_FLIGHT = 32

_NONE_TYPE = type(None)
#: Result fetches under way at once (see ``DaskExecutor._fetch``).
MAX_FETCHES = 2

_clients: dict[str, distributed.Client] = {}
_clients_lock = threading.Lock()


def shared_client(address: str, timeout: float | str | None = None) -> distributed.Client:
    """One client per scheduler address per process: runs reuse the connection."""
    with _clients_lock:
        client = _clients.get(address)
        if client is None or client.status in ("closing", "closed"):
            client = distributed.Client(address, timeout=timeout, set_as_default=False)
            _clients[address] = client
        return client


@atexit.register
def _close_clients() -> None:
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.close()
        except Exception:  # the scheduler may be gone already; nothing left to release
            log.debug("closing the Dask client failed", exc_info=True)


class DaskExecutor(Executor):
    """Runs attempts on a Dask cluster.

    ``address``: a running scheduler (``tcp://host:8786``). ``client``: an existing
    :class:`distributed.Client` (library use). With neither, a ``LocalCluster`` is started
    when the run starts (``n_workers``, ``threads_per_worker``, ``processes``) and closed
    when the run ends; its scheduler hands a task lost with its worker straight back
    (``allowed_failures = 0``) so that the run's retry policy decides.

    ``max_workers`` (attempts in flight) defaults to 4 x the cluster's worker threads, at
    least 32 (see :attr:`max_workers`).
    """

    name = "dask"

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        address: str | None = None,
        client: distributed.Client | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        dashboard_address: str | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        super().__init__(max_workers)
        if address is not None and client is not None:
            raise ValueError("give either address or client, not both")
        if (address is not None or client is not None) and (
            n_workers is not None or threads_per_worker is not None
        ):
            raise ValueError("n_workers and threads_per_worker apply to a local cluster only")
        for option, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        self._max_workers = max_workers
        self.address = address
        self._client = client
        self._own_client = False
        self._cluster: Any = None
        self._processes = bool(processes)
        self._dashboard = dashboard_address
        self._connect_timeout = connect_timeout
        if address is None and client is None:
            default_n, default_threads = _local_shape(self._processes)
            self.n_workers = n_workers or default_n
            self.threads_per_worker = threads_per_worker or default_threads
        self._run: Run | None = None
        self._run_context: otel_context.Context | None = None
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, Any, Any]] = deque()
        self._wakeup = threading.Condition(self._lock)
        self._collector: threading.Thread | None = None
        self._dispatchers: ThreadPoolExecutor | None = None
        self._futures: dict[Attempt, distributed.Future[Any]] = {}
        self._stopping = False
        # Collector thread only: finished futures waiting for a fetch, fetches under way.
        self._unfetched: list[tuple[Attempt, distributed.Future[Any]]] = []
        self._fetching = 0

    # -- sizing --------------------------------------------------------------------------
    @property
    def max_workers(self) -> int:
        """Attempts in flight: ``4 x`` the cluster's worker threads (at least 32) unless set.

        A Dask round trip (client, scheduler, worker and back) takes milliseconds; with only
        one attempt per worker thread in flight, workers idle between short tasks. Attempts
        beyond the thread count wait in Dask's queue, not the engine's.
        """
        if self._max_workers is None:
            if self._client is None and self.address is None:
                threads = self.n_workers * self.threads_per_worker
            else:
                threads = sum(self.client.nthreads().values())
            self._max_workers = max(OVERSUBSCRIBE * threads, MIN_IN_FLIGHT)
        return self._max_workers

    @max_workers.setter
    def max_workers(self, value: int) -> None:
        # The base class stores its thread-pool default here; ours comes from the cluster.
        self._max_workers = getattr(self, "_max_workers", None)

    @property
    def client(self) -> distributed.Client:
        """The Dask client, connecting (or starting the local cluster) on first use."""
        if self._client is None:
            if self.address is not None:
                self._client = shared_client(self.address, self._connect_timeout)
            else:
                self._start_local_cluster()
        assert self._client is not None
        return self._client

    def _start_local_cluster(self) -> None:
        self._cluster = distributed.LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=self.threads_per_worker,
            processes=self._processes,
            # The scheduler serves HTTP (health, metrics) even without a dashboard: a free
            # port unless one is asked for, so that runs side by side do not collide.
            dashboard_address=self._dashboard or ":0",
            scheduler_kwargs={"allowed_failures": 0},
            silence_logs=logging.ERROR,
        )
        self._client = distributed.Client(self._cluster, set_as_default=False)
        self._own_client = True

    # -- the executor contract ---------------------------------------------------------------
    def start(self, run: Run) -> None:
        self._run = run
        # Attempts dispatched from the collector thread have no span of their own in scope:
        # they inherit the trace of whoever started the run.
        if trace.get_current_span().get_span_context().is_valid:
            self._run_context = otel_context.get_current()
        # Connect (or start the local cluster) now: submit must not block.
        self.client  # noqa: B018
        with self._lock:
            self._stopping = False
            if self._collector is None:
                self._collector = threading.Thread(
                    target=self._collect, name=f"taskloom-dask-{run.id}", daemon=True
                )
                self._collector.start()

    def submit(self, attempt: Attempt) -> None:
        if attempt.plan.wrappers:
            self._dispatcher_pool().submit(self._run_wrapped, attempt)
            return
        try:
            future = self._send(attempt)
        except BaseException as exc:
            # Reported from the collector: the engine's lock is held here.
            self._queue("error", attempt, exc)
            return
        if future is None:
            self._queue("value", attempt, None)
            return
        future.add_done_callback(lambda f: self._queue("future", attempt, f))

    def cancel(self, attempt: Attempt) -> None:
        with self._lock:
            future = self._futures.get(attempt)
        if future is not None:
            # Client.cancel waits on the event loop; the engine's lock is held here.
            self._queue("cancel", attempt, future)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._stopping = True
            self._wakeup.notify_all()
            collector, self._collector = self._collector, None
            leftovers = list(self._futures.values())
            self._futures.clear()
        if collector is not None and wait and collector is not threading.current_thread():
            collector.join()
        if self._dispatchers is not None:
            self._dispatchers.shutdown(wait=wait, cancel_futures=True)
            self._dispatchers = None
        client = self._client
        if leftovers and client is not None and client.status == "running":
            try:
                client.cancel(leftovers, force=True)
            except Exception:
                log.debug("cancelling overrun Dask futures failed", exc_info=True)
        if self._own_client:
            self._close_local_cluster()

    def _close_local_cluster(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        self._own_client = False
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    # -- sending -------------------------------------------------------------------------
    def _send(self, attempt: Attempt,
              collect: int | None = None) -> distributed.Future[Any] | None:
        """Submit the attempt's body to Dask; None when the task has no body. With
        ``collect`` (characters) the worker captures its output (:mod:`.remote`)."""
        task = attempt.task
        plan = attempt.plan
        body = plan.body
        if body is None:
            return None
        kwargs = attempt.kwargs()
        if plan.wants_context:
            kwargs["context"] = RemoteContext.of(attempt)
        # Named like Dask's own submissions: Dask groups tasks by the key without its last
        # word (duration statistics, queuing of many similar tasks), here the function.
        key = f"{funcname(body)}-{uuid.uuid4().hex}"
        try:
            future = self.client.submit(
                run_remote, body, kwargs, plan.is_async, self._carrier(), collect, key=key,
                pure=False
            )
        except Exception as exc:
            raise _explain(task.name, body, kwargs, exc) from exc
        with self._lock:
            self._futures[attempt] = future
        return future

    def _carrier(self) -> dict[str, str] | None:
        """The W3C trace headers of the current span, or of the run's when none is current."""
        ctx: otel_context.Context | None = None
        if not trace.get_current_span().get_span_context().is_valid:
            if self._run_context is None:
                return None
            ctx = self._run_context
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=ctx)
        return carrier or None

    # -- completion ----------------------------------------------------------------------
    def _queue(self, kind: str, attempt: Any, payload: Any) -> None:
        with self._lock:
            self._pending.append((kind, attempt, payload))
            self._wakeup.notify()

    def _collect(self) -> None:
        """Report finished attempts to the engine, fetching their results in batches."""
        pending = self._pending
        while True:
            with self._lock:
                while not pending:
                    if self._stopping:
                        return
                    self._wakeup.wait()
                batch = list(pending)
                pending.clear()
            try:
                self._report(batch)
            except BaseException:  # never lose the collector: the run would hang
                log.exception("reporting Dask results failed")

    def _report(self, batch: list[tuple[str, Any, Any]]) -> None:
        outcomes: list[tuple[Attempt, Any, BaseException | None]] = []
        finished: list[tuple[Attempt, distributed.Future[Any]]] = []
        for kind, attempt, payload in batch:
            if kind == "future":
                if payload.status == "finished":
                    if payload.type is _NONE_TYPE:
                        # The worker reported a None result: nothing to fetch.
                        outcomes.append((attempt, None, None))
                    else:
                        finished.append((attempt, payload))
                else:
                    outcomes.append((attempt, None, _error_of(payload)))
            elif kind == "fetched":
                self._fetching -= 1
                outcomes.extend(_fetched(*payload))
            elif kind == "cancel":
                try:
                    payload.cancel(reason="taskloom attempt cancelled")
                except Exception:
                    log.debug("cancelling a Dask future failed", exc_info=True)
            elif kind == "error":
                outcomes.append((attempt, None, payload))
            else:
                outcomes.append((attempt, payload, None))
        unfetched = self._unfetched
        unfetched.extend(finished)
        if unfetched and self._fetching < MAX_FETCHES:
            # Whatever finished while earlier fetches were under way goes in one fetch.
            self._fetch(list(unfetched))
            unfetched.clear()
        with self._lock:
            for attempt, _, _ in outcomes:
                self._futures.pop(attempt, None)
        for attempt, value, error in outcomes:
            attempt.done(value, error)

    def _fetch(self, finished: list[tuple[Attempt, distributed.Future[Any]]]) -> None:
        """Fetch the results of finished futures in one request, without waiting for it.

        A fetch is a round trip to the workers holding the results; it runs on the
        client's event loop while the collector goes on reporting. At most
        ``MAX_FETCHES`` are under way: results finishing meanwhile wait and go together in
        the next one, so a busy cluster sees few large fetches rather than one per task.
        """
        self._fetching += 1
        client = self.client
        loop: Any = client.loop
        fetch = client.gather([f for _, f in finished], direct=True, asynchronous=True)
        fetching = asyncio.run_coroutine_threadsafe(fetch, loop.asyncio_loop)
        fetching.add_done_callback(lambda done: self._queue("fetched", None, (finished, done)))

    # -- tasks with wrappers -------------------------------------------------------------
    def _dispatcher_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._dispatchers is None:
                self._dispatchers = ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="taskloom-dask-dispatch"
                )
            return self._dispatchers

    def _run_wrapped(self, attempt: Attempt) -> None:
        """Wrappers run here; only the body inside them goes to the cluster."""

        def remote() -> Any:
            # The capture plugin is a wrapper: an attempt capturing its output comes here.
            buf = capture.current()
            wanted = capture.request()
            future = self._send(attempt, None if wanted is None else wanted[0])
            if future is None:
                return None
            if attempt.token.cancelled:
                future.cancel(reason="taskloom attempt cancelled")
            try:
                value = future.result()
            except BaseException as exc:
                output = getattr(exc, "__dict__", {}).pop(OUTPUT_ATTRIBUTE, None)
                if buf is not None and output is not None:
                    buf.absorb(*output)
                raise
            finally:
                with self._lock:
                    self._futures.pop(attempt, None)
            if isinstance(value, Captured):
                if buf is not None:
                    buf.absorb(*value.output)
                value = value.value
            return value

        try:
            value, error = attempt.wrap(remote)(), None
        except BaseException as exc:
            value, error = None, exc
        attempt.done(value, error)


def _fetched(
    finished: list[tuple[Attempt, distributed.Future[Any]]],
    fetching: concurrent.futures.Future[list[Any]],
) -> list[tuple[Attempt, Any, BaseException | None]]:
    try:
        values = fetching.result()
    except Exception:
        # One of them was lost or cancelled meanwhile: fetch one by one to tell which.
        out: list[tuple[Attempt, Any, BaseException | None]] = []
        for attempt, future in finished:
            try:
                out.append((attempt, future.result(), None))
            except BaseException as exc:
                out.append((attempt, None, exc))
        return out
    pairs = zip(finished, values, strict=True)
    return [(attempt, value, None) for (attempt, _), value in pairs]


def _error_of(future: distributed.Future[Any]) -> BaseException:
    try:
        future.result()
    except BaseException as exc:
        return exc
    return RuntimeError(f"Dask future {future.key!r} ended as {future.status!r}")


def _explain(
    name: str, body: Callable[..., Any], kwargs: dict[str, Any], exc: Exception
) -> BaseException:
    """Name the task and the part that could not be pickled, if pickling was the trouble."""
    import cloudpickle

    try:
        cloudpickle.dumps(body)
    except Exception as why:
        return NotSerializableError(
            name, f"its callable {body!r} cannot be pickled for Dask: {why}"
        )
    for dep, value in kwargs.items():
        try:
            cloudpickle.dumps(value)
        except Exception as why:
            what = (
                "its context (task config, dependency results or run data)"
                if isinstance(value, RemoteContext)
                else f"the result of dependency {dep!r} ({type(value).__name__})"
            )
            return NotSerializableError(name, f"{what} cannot be pickled for Dask: {why}")
    return exc


def _local_shape(processes: bool) -> tuple[int, int]:
    """Dask's own default split of this machine's cores into workers and threads."""
    from dask.system import CPU_COUNT
    from distributed.deploy.utils import nprocesses_nthreads

    if processes:
        n, threads = nprocesses_nthreads(CPU_COUNT)
        return int(n), int(threads)
    return 1, int(CPU_COUNT)
