"""Task bodies for the CLI claim tests (``call = "claim_bodies:body"``).

Each execution appends ``start TIME PID TAG TASK`` and ``end TIME PID TAG TASK`` to
``config.log``.
With ``config.gate`` naming a folder holding the named pipes ``out`` and ``in``, the body
writes ``inside`` to ``out`` and waits for a line on ``in`` between the two.
"""

from __future__ import annotations

import os
import time
from typing import Any


def _append(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def body(context: Any) -> Any:
    config = context.config
    tag, name = config.get("tag", "-"), context.task.name
    _append(config["log"], f"start {time.time()!r} {os.getpid()} {tag} {name}")
    gate = config.get("gate")
    if gate:
        with open(os.path.join(gate, "out"), "w") as out:
            out.write("inside\n")
        with open(os.path.join(gate, "in")) as go:
            go.readline()
    _append(config["log"], f"end {time.time()!r} {os.getpid()} {tag} {name}")
    return tag
