"""A process for the run-claim tests: ``python claim_worker.py DB RUN_ID LOG MODE [OPTIONS]``.

Runs one task under ``RUN_ID`` (``-`` for a fresh id) as workflow ``wf``, with the SQLite
store at the path DB, or the PostgreSQL store when DB is a ``postgresql://`` DSN (the
taskloom-postgres tests use this worker too). The body appends ``start T PID`` and ``end T
PID`` lines (wall-clock times) to LOG. MODE ``gate``: the body prints ``inside`` and waits
for a line on stdin first; ``free``: it does not wait. OPTIONS is a JSON object of the
engine's claim settings (``on_conflict``, ``max_active_runs``, ``on_limit``). Prints
``result <status> <value>`` or ``error <message>``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from taskloom import Engine, Task, TaskloomError


def _append(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def main(db: str, run_id: str, log: str, mode: str, options: str = "{}") -> int:
    def body(context: Any) -> int:
        _append(log, f"start {time.time()!r} {os.getpid()}")
        if mode == "gate":
            print("inside", flush=True)
            sys.stdin.readline()
        _append(log, f"end {time.time()!r} {os.getpid()}")
        return os.getpid()

    store, where = ("postgres", "dsn") if db.startswith("postgresql://") else ("sqlite", "path")
    engine = Engine(store=store, store_options={where: db, "durability": "safe"},
                    config=json.loads(options))
    try:
        summary = engine.run([Task("work", fn=body)], run_id=None if run_id == "-" else run_id,
                             name="wf")
    except TaskloomError as exc:
        print(f"error {exc}", flush=True)
        return 2
    finally:
        engine.close()
    print(f"result {summary.status} {summary.results.get('work')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
