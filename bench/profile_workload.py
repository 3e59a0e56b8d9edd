"""Run one workload in a loop for a sampling profiler.

    py-spy record -o w3.svg -- python bench/profile_workload.py W3
    pyinstrument bench/profile_workload.py W1

Default plugins loaded, thread executor, 2 workers: the configuration the benchmark measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import chain, fan_out, layered, noop

from taskloom import Engine, Task

GRAPHS = {"W1": fan_out, "W2": chain, "W3": layered}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "W3"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    graph = GRAPHS[name]()
    engine = Engine(max_workers=2)
    for _ in range(repeats):
        engine.run([Task(n, fn=noop, dependencies=d) for n, d in graph.items()])


if __name__ == "__main__":
    main()
