"""The dashboard's web application: pages, HTML fragments, JSON endpoints, event streams and
actions, on Starlette with Jinja2 templates. Every script and style is served from the
package (``static/``); pages use the system's fonts, so nothing is fetched from elsewhere.

Security:

* **Token**: when the app has a token, every request (pages, fragments, JSON, the event
  streams, static files) must carry it: ``Authorization: Bearer TOKEN``, the
  ``taskloom_ui_token`` cookie, or ``?token=TOKEN`` once (which sets the cookie).
* **CSRF**: every POST must send the per-session token of the ``taskloom_csrf`` cookie back
  in the ``csrf`` form field or the ``X-CSRF-Token`` header. The cookie is set on the first
  response; pages put it in their forms. Cookies are ``SameSite=Strict`` and ``HttpOnly``.

Live pages listen to ``/events/...`` (Server-Sent Events): the server reads the store's cheap
version numbers and sends ``update`` when something changed; the page then fetches its
fragment again. The version is read every ``poll`` seconds, or, when the store announces its
changes (``watch_changes``: PostgreSQL's LISTEN/NOTIFY), when a change is announced and
otherwise every ``WATCH_RECHECK`` seconds (a notification lost with a dropped connection).
A stream ends after ``stream_seconds`` (the browser
reconnects and the token is checked again) or, for a run, with ``done`` once it finished.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskloom.app.text import counts_text, seconds, when
from taskloom.app.ui.actions import Launcher, requested_by
from taskloom.app.ui.history import History, is_final, task_dependencies, task_dict
from taskloom.app.ui.layout import (
    FULL_LIMIT,
    SWEEPS,
    Bar,
    Layout,
    compact_graph_svg,
    gantt_lanes_svg,
    gantt_svg,
    graph_svg,
    layout,
)

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "taskloom_ui_token"
CSRF_COOKIE = "taskloom_csrf"
PER_PAGE = 50
MAX_PER_PAGE = 500
STATUSES = ("running", "waiting", "completed", "failed", "cancelled", "interrupted")
#: How many tasks' details (attempts, errors, logs, result) one page of a run lists.
TASK_DETAILS = 100
#: How much of an attempt's captured output a run page shows (the rest: a link to all of it).
LOG_PREVIEW = 4000
TRIGGERS = ("manual", "schedule", "resume", "api")
_DETAIL_ORDER = {"failed": 0, "cancelled": 1, "running": 2, "retrying": 3}
#: With a store that announces changes, how often a live view still reads its version.
WATCH_RECHECK = 5.0
#: How many live views may wait for an announced change at once (each waits in a thread).
WATCH_WAITERS = 200
_SET_ITEM = re.compile(r"^[A-Za-z0-9_.\-\"]+=.+$")


class BadRequest(Exception):
    """A query or form value the dashboard cannot use; answered with 400 and the message."""


# -- formatting helpers for the templates ------------------------------------------------------
# -- the guard: token and CSRF cookie ------------------------------------------------------------
class Guard:
    """Checks the token on every request and hands out the CSRF cookie (see the module)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        set_cookies: list[str] = []
        if self.token is not None:
            given = None
            auth = conn.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            elif TOKEN_COOKIE in conn.cookies:
                given = conn.cookies[TOKEN_COOKIE]
            elif "token" in conn.query_params:
                given = conn.query_params["token"]
                set_cookies.append(_cookie(TOKEN_COOKIE, given))
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                response = PlainTextResponse(
                    "taskloom ui: a token is required (open the address 'taskloom ui' printed, "
                    "or send 'Authorization: Bearer TOKEN')", status_code=401)
                await response(scope, receive, send)
                return
        csrf = conn.cookies.get(CSRF_COOKIE)
        if not csrf:
            csrf = secrets.token_urlsafe(24)
            set_cookies.append(_cookie(CSRF_COOKIE, csrf))
        scope.setdefault("state", {})["csrf"] = csrf

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start" and set_cookies:
                headers = MutableHeaders(scope=message)
                for cookie in set_cookies:
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookies)


def _cookie(name: str, value: str) -> str:
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"


async def _check_csrf(request: Request) -> dict[str, str]:
    """The posted form, once its CSRF token matched the cookie's; 403 otherwise."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    sent = request.headers.get("x-csrf-token") or fields.get("csrf", "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not sent or not secrets.compare_digest(sent.encode(), cookie.encode()):
        raise _Forbidden()
    return fields


class _Forbidden(Exception):
    pass


# -- the application ------------------------------------------------------------------------------
class Dashboard:
    """The routes over one history (and, when given, one configuration file)."""

    def __init__(self, history: History, *, config_path: Path | None = None,
                 stream_seconds: float = 300.0, poll: float = 0.5) -> None:
        self.history = history
        self.config_path = config_path
        self.stream_seconds = stream_seconds
        self.poll = poll
        self.launcher = Launcher(history.path)
        self._layouts: dict[tuple[Any, ...], Layout] = {}
        self._drawings: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._timelines: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._watchers = anyio.CapacityLimiter(WATCH_WAITERS)
        # Pages are built on the thread pool: the caches are trimmed by one thread at a time.
        self._cache_lock = threading.Lock()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters["when"] = when
        env.filters["seconds"] = seconds
        env.filters["counts"] = counts_text
        env.globals["statuses"] = STATUSES
        env.globals["triggers"] = TRIGGERS
        # Compiled now, not by the first request of each page (a few tens of milliseconds).
        for name in env.list_templates(extensions=["html"]):
            env.get_template(name)
        if config_path is not None:
            # The graphs of the runs recorded from this file read its dependencies: read them
            # while the server starts, not in the first run page asked for (a 5,000-task file
            # takes a few tenths of a second to parse).
            threading.Thread(target=history.dependencies, args=(str(config_path.resolve()),),
                             name="taskloom-ui-warm", daemon=True).start()

    # -- helpers ---------------------------------------------------------------------------------
    def _layout(self, names: list[str], deps: dict[str, list[str]]) -> Layout:
        """The layout of a graph; it depends on the tasks and their dependencies only, so it
        is kept by that shape: every run of a workflow (and every change of a live run's
        page) reuses it. A graph drawn compact (no names) keeps the declaration order
        inside its layers: ordering them for fewer crossings is most of the layout's time
        and shows little there."""
        key = (tuple(names), tuple((n, tuple(deps.get(n, ()))) for n in names))
        found = self._layouts.get(key)
        if found is None:
            sweeps = 0 if len(names) > FULL_LIMIT else SWEEPS
            found = layout(names, deps, sweeps)
            with self._cache_lock:
                self._layouts[key] = found
                while len(self._layouts) > 8:
                    del self._layouts[next(iter(self._layouts))]
        return found

    def page(self, request: Request, name: str, context: dict[str, Any],
             status_code: int = 200) -> Response:
        context = {"csrf": request.state.csrf, "db": str(self.history.path),
                   "config_path": self.config_path, **context}
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    @staticmethod
    def _filters(request: Request) -> dict[str, Any]:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        trigger = q.get("trigger") or None
        if trigger is not None and trigger not in TRIGGERS:
            raise BadRequest(f"trigger must be one of {', '.join(TRIGGERS)}; got {trigger!r}")
        out: dict[str, Any] = {"workflow": q.get("workflow") or None, "status": status,
                               "trigger": trigger, "since": None, "until": None}
        for key in ("since", "until"):
            text = q.get(key)
            if text:
                try:
                    day = datetime.strptime(text, "%Y-%m-%d")
                except ValueError:
                    raise BadRequest(f"{key} must be a date YYYY-MM-DD; got {text!r}") from None
                out[key] = (day + timedelta(days=1 if key == "until" else 0)).timestamp()
        try:
            page = int(q.get("page", "1"))
            per = int(q.get("per", str(PER_PAGE)))
        except ValueError:
            raise BadRequest("page and per must be whole numbers") from None
        if page < 1 or not 1 <= per <= MAX_PER_PAGE:
            raise BadRequest(f"page must be >= 1 and per between 1 and {MAX_PER_PAGE}")
        out["limit"], out["offset"] = per, (page - 1) * per
        return out

    def _runs(self, request: Request) -> dict[str, Any]:
        filters = self._filters(request)
        data = self.history.runs(**filters)
        q = request.query_params
        query = {k: q[k] for k in ("workflow", "status", "trigger", "since", "until", "per")
                 if q.get(k)}
        page = filters["offset"] // filters["limit"] + 1
        pages = max((data["total"] + filters["limit"] - 1) // filters["limit"], 1)
        data.update(page=page, pages=pages, query=query,
                    query_text=urlencode(query),
                    prev_url=f"?{urlencode({**query, 'page': page - 1})}" if page > 1 else None,
                    next_url=f"?{urlencode({**query, 'page': page + 1})}"
                    if page < pages else None)
        return data

    def _kept(self, cache: dict[tuple[Any, ...], dict[str, Any]], key: tuple[Any, ...],
              view: dict[str, Any]) -> None:
        with self._cache_lock:
            cache[key] = view
            while len(cache) > 4:
                del cache[next(iter(cache))]

    def _drawn(self, run_id: str) -> dict[str, Any] | None:
        """The run with its graph drawn (and, for a run drawn in full, its timeline). Only
        what the first screen shows is read: the tasks' latest states (not their 20,000
        state changes), the layout kept per workflow shape; a big run's timeline needs
        every attempt and comes in its own request (:meth:`_timeline`). A finished run
        changes only with its version (a resume, an action), so its drawing is kept for
        that version."""
        version = self.history.run_version(run_id)
        if version is None:
            return None
        key = (run_id, version)
        found = self._drawings.get(key)
        if found is not None:
            return found
        run = self.history.summary(run_id)
        if run is None:
            return None
        states = self.history.states(run_id)
        names = list(states)
        graph = self._layout(names, self.history.dependencies(run["config_path"]))
        big = len(names) > FULL_LIMIT
        run.update(actions=self.history.actions(run_id), task_count=len(names))
        view: dict[str, Any] = {
            "run": run, "final": is_final(run["status"]), "compact": big,
            "layer_count": len({p.layer for p in graph.nodes.values()}),
            "graph_svg": compact_graph_svg(graph, states) if big
            else graph_svg(graph, states, link=f"/runs/{run_id}?task="),
            # The task list's order: those that need a look first (failed, running, ...).
            "order": sorted(names, key=lambda n: _DETAIL_ORDER.get(states[n], 9)),
            "timeline_url": f"/runs/{run_id}/timeline",
        }
        if not big:
            view.update(self._timeline(run_id))
        if view["final"]:
            view["listed"] = {}  # pages of task details, kept with it (_listed)
            self._kept(self._drawings, key, view)
        return view

    def _timeline(self, run_id: str) -> dict[str, Any]:
        """The run's timeline (Gantt) from every attempt: one row per task, or for a big
        run attempts packed into lanes. Kept for a finished run's version."""
        version = self.history.run_version(run_id)
        key = (run_id, version)
        found = self._timelines.get(key)
        if found is not None:
            return found
        run = self.history.run(run_id, records=True)
        if run is None:
            return {"gantt_svg": "", "lanes": 0, "attempt_count": 0, "compact": False}
        tasks = run["tasks"]
        big = len(tasks) > FULL_LIMIT
        running = run["status"] in ("running", "waiting")
        now = run["now"]
        ends = [a.finished for t in tasks for a in t.attempts if a.finished]
        starts = [a.started for t in tasks for a in t.attempts]
        t0 = min([run["started"] or now, *starts])
        # A cut-off attempt (the process died) is drawn to the last thing recorded.
        last = max([*ends, *starts, run["finished"] or 0.0, t0])
        t1 = now if running else max(last, run["finished"] or 0.0)
        rows = []
        # Lanes need no order; rows go by each task's first start.
        for t in (tasks if big else sorted((t for t in tasks if t.attempts),
                                           key=lambda t: t.attempts[0].started)):
            bars = []
            for a in t.attempts:
                open_ = a.finished is None
                end = a.finished if not open_ else (now if running else last)
                state = a.state if not (open_ and not running) else "interrupted"
                bars.append(Bar(t.name, a.number, state, a.started, end, open_))
            rows.append((t.name, bars))
        lanes = 0
        if big:
            gantt, lanes = gantt_lanes_svg([b for _, bars in rows for b in bars], t0, t1,
                                           now if running else None)
        else:
            gantt = gantt_svg(rows, t0, t1, now if running else None)
        view = {"gantt_svg": gantt, "lanes": lanes, "attempt_count": len(starts),
                "compact": big}
        if version is not None and is_final(run["status"]):
            self._kept(self._timelines, key, view)
        return view

    def _run_view(self, run_id: str, task: str | None = None,
                  page: int = 1) -> dict[str, Any] | None:
        drawn = self._drawn(run_id)
        if drawn is None:
            return None
        run = {**drawn["run"], "children": self.history.children(run_id)}
        # The task list is paged, TASK_DETAILS a page; a task asked for by name (a click in
        # the graph, the find box) is added to whichever page is shown. Only the listed
        # tasks' records are read.
        first = drawn["order"]
        count = len(first)
        pages = max((count + TASK_DETAILS - 1) // TASK_DETAILS, 1)
        page = min(max(page, 1), pages)
        names = first[(page - 1) * TASK_DETAILS:page * TASK_DETAILS]
        if task is not None and task not in names and task in set(first):
            names = [*names, task]
        listed = self._listed(run_id, names, drawn)
        query = {"task": task} if task else {}
        waits = self.history.waits(run_id)
        for w in waits:
            w["schema_text"] = (", ".join(f"{k}: {v}" for k, v in w["schema"].items())
                                if w.get("schema") else None)
        return {
            **drawn, "run": run, "shown_tasks": listed, "task": task,
            "task_page": page, "task_pages": pages,
            "first_shown": (page - 1) * TASK_DETAILS + 1,
            "last_shown": min(page * TASK_DETAILS, count),
            "page_url": lambda n: f"/runs/{run_id}?{urlencode({**query, 'page': n})}",
            "live_url": f"/runs/{run_id}/live?{urlencode({**query, 'page': page})}",
            "log_preview": LOG_PREVIEW,
            "can_retry": run["status"] in ("failed", "cancelled", "interrupted")
            and bool(run["config_path"]),
            "can_cancel": run["status"] == "running",
            "waits": waits, "signals": self.history.signals(run_id),
            "can_signal": self.history.takes_signals and not is_final(run["status"]),
        }

    def _listed(self, run_id: str, names: list[str],
                drawn: dict[str, Any]) -> list[dict[str, Any]]:
        """The details of the tasks ``names`` (attempts, errors, result and log previews),
        kept with a finished run's drawing: paging through its tasks reads each page once."""
        pages: dict[tuple[Any, ...], list[dict[str, Any]]] | None = drawn.get("listed")
        key = (LOG_PREVIEW, *names)
        if pages is not None and key in pages:
            return pages[key]
        previews = self.history.store.result_previews(run_id)
        listed = [task_dict(t, previews.get(t.name))
                  for t in self.history.task_records(run_id, names)]
        logs = self.history.log_previews(run_id, names, LOG_PREVIEW)
        for t in listed:
            for a in t["attempts"]:
                a["log"], a["log_size"] = logs.get((t["name"], a["number"]), (None, 0))
        if pages is not None:
            with self._cache_lock:
                pages[key] = listed
                while len(pages) > 16:
                    del pages[next(iter(pages))]
        return listed

    @staticmethod
    def _page_number(request: Request) -> int:
        try:
            return int(request.query_params.get("page", "1"))
        except ValueError:
            raise BadRequest("page must be a whole number") from None

    # -- pages and fragments --------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    async def runs_page(self, request: Request) -> Response:
        data = await run_in_threadpool(self._runs, request)
        return self.page(request, "runs.html", data)

    async def runs_table(self, request: Request) -> Response:
        data = await run_in_threadpool(self._runs, request)
        return self.page(request, "_runs_table.html", data)

    async def api_runs(self, request: Request) -> Response:
        data = await run_in_threadpool(self._runs, request)
        keys = ("runs", "total", "limit", "offset", "counts", "workflows", "page", "pages")
        return JSONResponse({k: data[k] for k in keys})

    async def _resolve(self, request: Request) -> str | None:
        run = request.path_params["run_id"]
        resolved: str | None = await run_in_threadpool(self.history.resolve, run)
        return resolved

    async def _requested_view(self, request: Request) -> dict[str, Any] | None:
        """The run page's data for the run, task filter and page the request names."""
        run_id = await self._resolve(request)
        task = request.query_params.get("task")
        number = self._page_number(request)
        if run_id is None:
            return None
        view: dict[str, Any] | None = await run_in_threadpool(
            self._run_view, run_id, task, number)
        return view

    async def run_page(self, request: Request) -> Response:
        view = await self._requested_view(request)
        if view is None:
            return self.page(request, "missing.html",
                             {"what": f"run {request.path_params['run_id']}"}, 404)
        return self.page(request, "run.html", view)

    async def run_live(self, request: Request) -> Response:
        view = await self._requested_view(request)
        if view is None:
            return PlainTextResponse("no such run", status_code=404)
        return self.page(request, "_run_live.html", view)

    async def run_timeline(self, request: Request) -> Response:
        """The timeline alone: a big run's page asks for it once it has shown."""
        run_id = await self._resolve(request)
        if run_id is None:
            return PlainTextResponse("no such run", status_code=404)
        view = await run_in_threadpool(self._timeline, run_id)
        return self.page(request, "_timeline.html", view)

    async def api_run(self, request: Request) -> Response:
        run_id = await self._resolve(request)
        run = None if run_id is None else await run_in_threadpool(self.history.run, run_id)
        if run is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        return JSONResponse(run)

    def _log_query(self, request: Request) -> tuple[str | None, int | None]:
        q = request.query_params
        attempt = q.get("attempt")
        try:
            number = None if not attempt else int(attempt)
        except ValueError:
            raise BadRequest(f"attempt must be a whole number; got {attempt!r}") from None
        return q.get("task") or None, number

    async def log_text(self, request: Request) -> Response:
        """One attempt's whole captured output as plain text (never HTML: nothing in it
        runs in the browser)."""
        run_id = await self._resolve(request)
        task, number = self._log_query(request)
        if task is None or number is None:
            raise BadRequest("give the task and the attempt: ?task=NAME&attempt=N")
        text = None if run_id is None else await run_in_threadpool(
            self.history.log, run_id, task, number)
        if text is None:
            return PlainTextResponse(
                f"no output recorded for task {task!r} attempt {number} of run "
                f"{request.path_params['run_id']}", status_code=404)
        return PlainTextResponse(text, headers={"X-Content-Type-Options": "nosniff"})

    async def api_logs(self, request: Request) -> Response:
        run_id = await self._resolve(request)
        if run_id is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        task, number = self._log_query(request)
        rows = await run_in_threadpool(self.history.store.logs, run_id, task, number)
        return JSONResponse([{"task": name, "attempt": n, "time": t, "text": text}
                             for name, n, t, text in rows])

    async def api_actions(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.history.actions, None))

    def _config(self) -> Any:
        from taskloom.app.config import load_config

        if self.config_path is None:
            return None
        return load_config(self.config_path)

    def _workflow(self) -> dict[str, Any]:
        from taskloom.kernel.errors import ConfigError

        if self.config_path is None:
            return {"config": None, "problems": ["no configuration given: start the "
                                                 "dashboard with --config FILE"]}
        try:
            config = self._config()
        except ConfigError as exc:
            return {"config": str(self.config_path), "problems": list(exc.problems)}
        deps = task_dependencies(config.tasks)
        names = list(config.tasks)
        graph = layout(names, deps)
        return {
            "config": str(self.config_path), "problems": [],
            "tasks": [{"name": n, "options": dict(config.tasks[n])} for n in names],
            "dependencies": deps,
            "graph_svg": graph_svg(graph, {}),
        }

    async def workflow_page(self, request: Request) -> Response:
        data = await run_in_threadpool(self._workflow)
        return self.page(request, "workflow.html", data)

    async def api_workflow(self, request: Request) -> Response:
        data = await run_in_threadpool(self._workflow)
        data.pop("graph_svg", None)
        return JSONResponse(data, status_code=200 if not data["problems"] else 409)

    def _schedules(self) -> dict[str, Any]:
        from taskloom.app.ui.schedules import schedules
        from taskloom.kernel.errors import ConfigError
        from taskloom.kernel.pluginmanager import load_plugins

        if self.config_path is None:
            return {"jobs": [], "problems": ["no configuration given: start the dashboard "
                                             "with --config FILE"]}
        try:
            config = self._config()
        except ConfigError as exc:
            return {"jobs": [], "problems": list(exc.problems)}
        state_of = getattr(self.history.store, "schedule_state", None)
        state = state_of() if callable(state_of) else None
        plugins = load_plugins(config=config.settings)
        return {"jobs": schedules(config, plugins, state), "problems": []}

    async def schedules_page(self, request: Request) -> Response:
        data = await run_in_threadpool(self._schedules)
        return self.page(request, "schedules.html", data)

    async def api_schedules(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self._schedules))

    # -- event streams -------------------------------------------------------------------------
    def _stream(self, request: Request, version: Callable[[], Any],
                final: Callable[[Any], bool]) -> Response:
        async def events() -> AsyncIterator[str]:
            deadline = time.monotonic() + self.stream_seconds
            last: Any = object()
            n = 0
            watch = await run_in_threadpool(self.history.watch_changes)
            try:
                yield "retry: 2000\n\n"
                while True:
                    current = await run_in_threadpool(version)
                    if current != last:
                        n += 1
                        last = current
                        yield f"event: update\ndata: {n}\n\n"
                    if final(current):
                        yield "event: done\ndata: done\n\n"
                        return
                    if time.monotonic() >= deadline or await request.is_disconnected():
                        return
                    if watch is None:
                        await anyio.sleep(self.poll)
                    else:
                        await self._announced(watch, request, deadline)
            finally:
                if watch is not None:
                    watch.close()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def _announced(self, watch: Any, request: Request, deadline: float) -> None:
        """Until the store announces a change, ``WATCH_RECHECK`` (at least ``poll``) seconds
        passed, the stream's end or the client left. Waits in slices of a second so a gone
        client frees its thread soon."""
        until = min(time.monotonic() + max(self.poll, WATCH_RECHECK), deadline)
        while (left := until - time.monotonic()) > 0:
            woke = await anyio.to_thread.run_sync(watch.wait, min(left, 1.0),
                                                  limiter=self._watchers)
            if woke or await request.is_disconnected():
                return

    async def runs_events(self, request: Request) -> Response:
        return self._stream(request, self.history.list_version, lambda v: False)

    async def run_events(self, request: Request) -> Response:
        run_id = await self._resolve(request)
        if run_id is None:
            return PlainTextResponse("no such run", status_code=404)

        def final(version: Any) -> bool:
            # (status, finished, resumes, last event, actions); None: the run is gone
            return version is None or version[0] not in ("running", "waiting")

        return self._stream(request, lambda: self.history.run_version(run_id), final)

    # -- actions -------------------------------------------------------------------------------
    async def _action(self, request: Request,
                      act: Callable[[dict[str, str], str], Awaitable[Response]]) -> Response:
        try:
            fields = await _check_csrf(request)
        except _Forbidden:
            return PlainTextResponse("CSRF check failed: reload the page and try again",
                                     status_code=403)
        client = request.client.host if request.client else None
        return await act(fields, requested_by(client))

    async def _summary(self, request: Request) -> tuple[str, dict[str, Any]] | None:
        """The id and recorded summary of the run the request names, or None if unknown."""
        run_id = await self._resolve(request)
        if run_id is None:
            return None
        run: dict[str, Any] | None = await run_in_threadpool(self.history.summary, run_id)
        return None if run is None else (run_id, run)

    async def retry(self, request: Request) -> Response:
        async def act(fields: dict[str, str], who: str) -> Response:
            found = await self._summary(request)
            if found is None:
                return PlainTextResponse("no such run", status_code=404)
            run_id, run = found
            if run["status"] not in ("failed", "cancelled", "interrupted"):
                return PlainTextResponse(f"run {run_id} is {run['status']}: nothing to retry",
                                         status_code=409)
            if not run["config_path"]:
                return PlainTextResponse(f"run {run_id} recorded no configuration file: "
                                         f"resume it with 'taskloom resume {run_id} FILE'",
                                         status_code=409)
            config = self._runs_configuration(run["config_path"])
            if config is None:
                recorded = run["config_path"]
                return PlainTextResponse(
                    f"run {run_id} was recorded from {recorded}: start 'taskloom ui --config "
                    f"{recorded}' to re-run its tasks from the dashboard, or resume it with "
                    f"'taskloom resume {run_id} {recorded}'", status_code=409)
            tag = secrets.token_hex(3)
            pid, log = await run_in_threadpool(
                self.launcher.resume, run_id, config, tag)
            await run_in_threadpool(
                lambda: self.history.record_action(
                    "retry", who, run_id=run_id, workflow=run["workflow"],
                    detail=f"taskloom resume --retry-failed, pid {pid}, output in {log}"))
            return _after(request, f"/runs/{run_id}")

        return await self._action(request, act)

    def _runs_configuration(self, recorded: str | None) -> Path | None:
        """The dashboard's configuration when it is ``recorded`` (a run's configuration
        file), else None: the database alone never chooses which code runs, only the
        configuration given with --config may rebuild a run's tasks."""
        if self.config_path is None or not recorded or not Path(recorded).is_file():
            return None
        return self.config_path if os.path.samefile(self.config_path, recorded) else None

    def _signal(self, run_id: str, name: str, payload: Any, who: str) -> tuple[int, str]:
        """Send the signal; continue the run when it waits with no live process: the
        status code and what was done, for the page."""
        from taskloom.kernel.errors import TaskloomError

        run = self.history.summary(run_id)
        if run is None:
            return 404, "no such run"
        if is_final(run["status"]):
            return 409, f"run {run_id} is {run['status']}: it waits for no signal"
        try:
            self.history.send_signal(run_id, name, payload, who)
        except TaskloomError as exc:
            return 409, str(exc)
        waiting = [w["task"] for w in self.history.waits(run_id) if w["signal"] == name]
        detail = f"signal {name!r} with payload {json.dumps(payload)[:200]}"
        if waiting:
            detail += f" for {', '.join(waiting)}"
        if run["status"] == "waiting" and self.history.process_gone(run):
            config = self._runs_configuration(run["config_path"])
            if config is not None:
                pid, log = self.launcher.resume(run_id, config, secrets.token_hex(3),
                                                retry_failed=False)
                detail += f"; the run's process had exited: taskloom resume, pid {pid}, " \
                          f"output in {log}"
            else:
                detail += (f"; the run's process had exited: 'taskloom resume {run_id}' "
                           "continues it (the dashboard was not started with its "
                           "configuration)")
        self.history.record_action("signal", who, run_id=run_id, workflow=run["workflow"],
                                   detail=detail)
        return 200, detail

    async def signal(self, request: Request) -> Response:
        async def act(fields: dict[str, str], who: str) -> Response:
            run_id = await self._resolve(request)
            if run_id is None:
                return PlainTextResponse("no such run", status_code=404)
            name = fields.get("signal", "").strip()
            if not name:
                raise BadRequest("give the signal's name in the 'signal' field")
            text = fields.get("payload", "").strip() or "null"
            try:
                payload = json.loads(text)
            except ValueError as exc:
                raise BadRequest(f"payload: not JSON: {exc}") from None
            status, said = await run_in_threadpool(self._signal, run_id, name, payload, who)
            if status != 200:
                return PlainTextResponse(said, status_code=status)
            return _after(request, f"/runs/{run_id}")

        return await self._action(request, act)

    async def api_waits(self, request: Request) -> Response:
        run_id = await self._resolve(request)
        if run_id is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        waits = await run_in_threadpool(self.history.waits, run_id)
        signals = await run_in_threadpool(self.history.signals, run_id)
        return JSONResponse({"waits": waits, "signals": signals})

    async def cancel(self, request: Request) -> Response:
        async def act(fields: dict[str, str], who: str) -> Response:
            found = await self._summary(request)
            if found is None:
                return PlainTextResponse("no such run", status_code=404)
            run_id, run = found
            if run["status"] != "running":
                return PlainTextResponse(f"run {run_id} is {run['status']}: nothing to cancel",
                                         status_code=409)
            await run_in_threadpool(
                lambda: self.history.record_action(
                    "cancel", who, run_id=run_id, workflow=run["workflow"],
                    detail="asked of the running process"))
            return _after(request, f"/runs/{run_id}")

        return await self._action(request, act)

    async def start(self, request: Request) -> Response:
        async def act(fields: dict[str, str], who: str) -> Response:
            if self.config_path is None:
                return PlainTextResponse("no configuration given: start the dashboard with "
                                         "--config FILE", status_code=409)
            overrides = [line.strip() for line in fields.get("params", "").splitlines()
                         if line.strip()]
            bad = [o for o in overrides if not _SET_ITEM.match(o)]
            if bad:
                return PlainTextResponse(
                    f"parameters must be KEY=VALUE lines (as for --set); not {bad[0]!r}",
                    status_code=400)
            tag = datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
            pid, log = await run_in_threadpool(
                self.launcher.start, self.config_path, overrides, tag)
            detail = f"taskloom run {self.config_path}, pid {pid}, output in {log}"
            if overrides:
                detail += f", --set {' --set '.join(overrides)}"
            await run_in_threadpool(
                lambda: self.history.record_action("start", who, workflow=str(self.config_path),
                                                   detail=detail))
            return _after(request, "/runs")

        return await self._action(request, act)


def _after(request: Request, url: str) -> Response:
    """A form post goes back to ``url``; a script (JSON accepted) gets a JSON answer."""
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": True, "next": url})
    return RedirectResponse(url, status_code=303)


def create_app(history: History, *, config_path: str | Path | None = None,
               token: str | None = None, stream_seconds: float = 300.0,
               poll: float = 0.5) -> ASGIApp:
    """The dashboard over ``history``; ``config_path`` feeds the Workflow and Schedules pages
    and the start action; ``token`` guards every request (see the module docstring)."""
    d = Dashboard(history, config_path=Path(config_path) if config_path else None,
                  stream_seconds=stream_seconds, poll=poll)
    routes = [
        Route("/", d.index),
        Route("/runs", d.runs_page),
        Route("/runs/table", d.runs_table),
        Route("/runs/{run_id}", d.run_page),
        Route("/runs/{run_id}/live", d.run_live),
        Route("/runs/{run_id}/timeline", d.run_timeline),
        Route("/runs/{run_id}/log", d.log_text),
        Route("/runs/{run_id}/retry", d.retry, methods=["POST"]),
        Route("/runs/{run_id}/cancel", d.cancel, methods=["POST"]),
        Route("/runs/{run_id}/signal", d.signal, methods=["POST"]),
        Route("/workflow", d.workflow_page),
        Route("/workflow/start", d.start, methods=["POST"]),
        Route("/schedules", d.schedules_page),
        Route("/events/runs", d.runs_events),
        Route("/events/runs/{run_id}", d.run_events),
        Route("/api/runs", d.api_runs),
        Route("/api/runs/{run_id}", d.api_run),
        Route("/api/runs/{run_id}/logs", d.api_logs),
        Route("/api/runs/{run_id}/waits", d.api_waits),
        Route("/api/actions", d.api_actions),
        Route("/api/workflow", d.api_workflow),
        Route("/api/schedules", d.api_schedules),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def bad_request(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=400)

    app = Starlette(routes=routes, exception_handlers={BadRequest: bad_request})
    return Guard(app, token)
