"""Mapping against the same tasks declared statically, in one process.

Both sides run through ``run_flow`` on one engine (2 workers, memory store): a source task
returns the element list and a downstream task takes every result. The mapped side maps one
body over the list (10,000 instances and the gather task); the static side declares the
10,000 tasks up front, each with its element bound, and a collecting task depending on all
of them. Target: mapping costs at most 1.5x the static graph (issue: mapping over 10,000
elements).
"""

from __future__ import annotations

from typing import Any

from common import Row, Stat, interleaved, per_round

from taskloom import Engine, Task
from taskloom.api.mapping import map_task
from taskloom.api.workflows import run_flow


def _work(item: int) -> int:
    return item + 1


def mapped(engine: Engine, n: int) -> Any:
    items = list(range(n))
    tasks = [
        Task("items", fn=lambda: items),
        map_task(Task("work", fn=_work), "items", as_="item"),
        Task("total", fn=lambda work: len(work), dependencies=["work"]),
    ]
    summary = run_flow(engine, tasks)
    assert summary.ok and summary.results["total"] == n, summary.errors
    return summary


def static(engine: Engine, n: int) -> Any:
    names = [f"work[{i}]" for i in range(n)]

    def total(context: Any) -> int:
        return len([context.results[name] for name in names])

    tasks = [Task("items", fn=lambda: list(range(n)))]
    tasks += [Task(name, fn=lambda item=i: _work(item), dependencies=["items"])
              for i, name in enumerate(names)]
    tasks.append(Task("total", fn=total, dependencies=names))
    summary = run_flow(engine, tasks)
    assert summary.ok and summary.results["total"] == n, summary.errors
    return summary


def rows(quick: bool) -> list[Row]:
    n = 2_000 if quick else 10_000
    rounds = 3 if quick else 9
    engine = Engine(max_workers=2)
    times = interleaved({"mapped": lambda: mapped(engine, n),
                         "static": lambda: static(engine, n)}, rounds)
    ratios = per_round(times["mapped"], times["static"])
    cost = Stat.of([1 / r for r in ratios])
    engine.close()
    return [
        Row(f"map over {n:,} elements vs {n:,} static tasks (run_flow, 2 workers)",
            "wall s", Stat.of(times["mapped"]), Stat.of(times["static"]), "static tasks",
            higher_is_better=False, ratios=ratios, min_ratio=1 / 1.5,
            target="mapping <= 1.5x static",
            note=f"mapped/static cost {cost.median:.2f}x [{cost.low:.2f}..{cost.high:.2f}]"),
    ]


if __name__ == "__main__":
    import run as runner

    print(runner.table(rows(quick=False)))
