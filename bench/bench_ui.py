"""The dashboard's speed on big histories: the runs page over 10,000 runs and the run page of
a 5,000-task run, as server time (the app answering in process) and as time to a rendered
page in Debian's chromium (navigation to the load event, the graph drawn).

    python bench/bench_ui.py                   # 10,000 runs, a 5,000-task run
    python bench/bench_ui.py --runs 2000 --tasks 1000

Not part of ``bench/run.py`` (building the history takes a while); it prints a Markdown table
and writes it to bench/RESULTS_UI.md. Targets: under 200 ms server time, under 2 s in the
browser.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def build(folder: Path, runs: int, tasks: int) -> tuple[Path, str]:
    """A history of ``runs`` small runs (three workflows) and one ``tasks``-task run whose
    graph is layered (each task depends on two of the previous layer)."""
    from taskloom import Engine, Task

    db = folder / "taskloom.db"
    engine = Engine(max_workers=2, store="sqlite", store_options={"path": str(db)})
    t0 = time.perf_counter()
    for i in range(runs):
        engine.run([Task("a", fn=lambda: 1), Task("b", fn=lambda a: a, dependencies=["a"])],
                   name=f"workflow-{i % 3}")
    engine.close()
    print(f"{runs} runs recorded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rng = random.Random(7)
    width = 100
    deps: dict[str, list[str]] = {}
    lines = []
    for i in range(tasks):
        layer, prev = divmod(i, width)[0], []
        if layer:
            prev = [f"t{(layer - 1) * width + rng.randrange(width)}" for _ in range(2)]
        deps[f"t{i}"] = sorted(set(prev))
        lines += [f"[tasks.t{i}]", 'call = "benchtasks:noop"',
                  f"depends_on = {deps[f't{i}']!r}".replace("'", '"'), ""]
    config = folder / "big.toml"
    config.write_text("\n".join(lines))
    engine = Engine(max_workers=4, store="sqlite",
                    store_options={"path": str(db), "config_path": str(config)})
    t0 = time.perf_counter()

    def body(*_: Any, **__: Any) -> int:
        return 1

    big = engine.run([Task(n, fn=body, dependencies=d) for n, d in deps.items()], name="big")
    engine.close()
    print(f"{tasks}-task run recorded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return db, big.id


def _stats(samples: list[float]) -> str:
    return (f"{statistics.median(samples):.0f} ms "
            f"[{min(samples):.0f}..{max(samples):.0f}]")


def timed(fn: Any, repeat: int) -> tuple[str, str]:
    """``fn``'s wall time and the CPU time this process spent on it (every thread, the app's
    included), each as median [min..max] over ``repeat`` calls after a warm-up. On a busy
    machine the wall time grows with the other processes' load; the CPU time much less."""
    fn()  # warm-up
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return _stats(wall), _stats(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from starlette.testclient import TestClient

    from taskloom.app.ui.history import History
    from taskloom.app.ui.server import create_app

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db, big = build(Path(tmp), args.runs, args.tasks)
        history = History.open(db)
        app = create_app(history)
        pages = {
            f"runs page 1 of {args.runs + 1} runs": "/runs",
            "runs page 100": "/runs?page=100",
            "runs filtered by workflow, page 20": "/runs?workflow=workflow-1&page=20",
            "runs filtered by status": "/runs?status=completed",
            "/api/runs": "/api/runs",
            f"run page, {args.tasks} tasks": f"/runs/{big}",
            f"its timeline, {args.tasks} tasks": f"/runs/{big}/timeline",
            f"/api/runs/RUN, {args.tasks} tasks": f"/api/runs/{big}",
        }
        with TestClient(app) as client:
            for label, url in pages.items():
                def get(url: str = url) -> None:
                    answer = client.get(url)
                    assert answer.status_code == 200, (url, answer.status_code)

                rows.append((label, *timed(get, args.repeat), "server"))

        def first_view(fresh_history: bool) -> list[tuple[float, float]]:
            # A dashboard just started: the run not read, laid out or drawn yet; with a fresh
            # history, its configuration file not read either. Only the requests are timed:
            # the page, then the timeline it asks for once shown.
            fresh = History.open(db) if fresh_history else history
            took = []
            try:
                with TestClient(create_app(fresh)) as client:
                    for url in (f"/runs/{big}", f"/runs/{big}/timeline"):
                        c0, t0 = time.process_time(), time.perf_counter()
                        answer = client.get(url)
                        took.append(((time.perf_counter() - t0) * 1000,
                                     (time.process_time() - c0) * 1000))
                        assert answer.status_code == 200
            finally:
                if fresh_history:
                    fresh.close()
            return took

        for label, fresh_history in (("its configuration already read", False),
                                     ("its configuration read too", True)):
            first_view(fresh_history)  # warm-up
            samples = [first_view(fresh_history) for _ in range(args.repeat)]
            for i, what in enumerate(("run page", "its timeline (asked for by the page)")):
                rows.append((f"{what}, {args.tasks} tasks, first view ({label})",
                             _stats([s[i][0] for s in samples]),
                             _stats([s[i][1] for s in samples]), "server"))
        rows += browser(app, {k: v for k, v in pages.items()
                              if not v.startswith("/api") and not v.endswith("/timeline")},
                        args.repeat)
        history.close()
    table = ["| page | wall time, median [min..max] | CPU time of this process | measured |",
             "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(table) + "\n"
    print(text)
    (HERE / "RESULTS_UI.md").write_text(
        "# Dashboard benchmark\n\n`python bench/bench_ui.py` "
        f"(--runs {args.runs} --tasks {args.tasks}, {args.repeat} repetitions after a "
        "warm-up). Server: the app answering in process (Starlette's test client); a "
        "finished run's drawing is kept for its version, so a repeated view of the big run "
        "costs a query and the template, and the first view of a fresh dashboard (the "
        "tasks' latest states read, the graph laid out and drawn, the first page of task "
        "details read; then the timeline, which reads every attempt, in the request the page "
        "makes once shown) is measured on its own rows. CPU time: what "
        "this process spent (every thread), which a busy machine inflates much less than "
        "the wall time. Browser: Debian's chromium, navigation until the load event with the "
        f"page drawn. Load average when it started: {load}.\n\n" + text)


def browser(app: Any, pages: dict[str, str], repeat: int) -> list[tuple[str, str, str, str]]:
    import uvicorn
    from playwright.sync_api import sync_playwright

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            timeout_graceful_shutdown=1, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    rows = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            for label, url in pages.items():
                def load(url: str = url) -> None:
                    page.goto(base + url, wait_until="load")
                    page.wait_for_selector("table.runs, svg.dag", state="attached")
                    if "/runs/" in url:  # a big run's timeline comes in its own request
                        page.wait_for_selector("svg.gantt", state="attached")

                wall, _ = timed(load, repeat)  # the browser's own CPU time is not this process's
                rows.append((label, wall, "-", "browser"))
            b.close()
    finally:
        server.should_exit = True
        thread.join(10)
    return rows


if __name__ == "__main__":
    main()
