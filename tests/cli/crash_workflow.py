"""A workflow for the crash tests: every execution of a task appends its name to a log file.

``python crash_workflow.py DB LOG RUN_ID`` runs it with the SQLite store (durability safe).
With ``TASKLOOM_CRASH_BLOCK`` set, task ``gate`` writes ``gate`` (to stdout when the variable
is ``stdout``, else to the named pipe it names) and blocks, so the test can kill the process
at that point. Without it, ``gate`` does not block.

The workflow also works as TOML tasks: ``call = "crash_workflow:step"`` with
``config = { log = "..." }``.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from taskloom import Engine, Task

LAYERS, WIDTH = 6, 8
_never = threading.Event()


def _append(log: str, name: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
    finally:
        os.close(fd)


def step(context: Any) -> dict[str, Any]:
    """A task body: log the execution, return a result built from the dependencies."""
    name = context.task.name
    _append(context.config["log"], name)
    block = os.environ.get("TASKLOOM_CRASH_BLOCK")
    if name == "gate" and block:
        if block == "stdout":
            print("gate", flush=True)
        else:  # a named pipe the test reads from
            with open(block, "w") as f:
                f.write("gate\n")
        _never.wait()
    upstream = sum(context.results[d]["n"] for d in context.task.dependencies)
    return {"task": name, "n": upstream + 1}


def graph() -> dict[str, list[str]]:
    """Layered tasks, plus ``gate`` in the middle that a third of the later tasks need."""
    g: dict[str, list[str]] = {}
    for layer in range(LAYERS):
        for i in range(WIDTH):
            deps = [f"l{layer - 1}_{(i + k) % WIDTH}" for k in range(2)] if layer else []
            if layer > 2 and i % 3 == 0:
                deps.append("gate")
            g[f"l{layer}_{i}"] = deps
    g["gate"] = ["l1_0"]
    return g


def tasks(log: str) -> list[Task]:
    return [
        Task(name, fn=step, dependencies=deps, config={"log": log})
        for name, deps in graph().items()
    ]


def main(db: str, log: str, run_id: str) -> None:
    engine = Engine(max_workers=2, store="sqlite",
                    store_options={"path": db, "durability": "safe"})
    summary = engine.run(tasks(log), run_id=run_id, name="crash")
    engine.close()
    print(summary.status, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
