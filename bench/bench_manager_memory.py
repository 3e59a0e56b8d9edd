"""How much a long-lived ``TaskManager`` grows: N small tasks executed in batches, measured in
a subprocess of its own (RSS before the first batch and after the last).

    python bench/bench_manager_memory.py [TASKS] [BATCH] [RETENTION]

Defaults: 200,000 tasks in batches of 1,000 with the manager's default retention. Prints the
RSS growth in MB; the target is under 150 MB (every finished task kept would be about
1.25 KB a task).
"""

from __future__ import annotations

import json
import subprocess
import sys


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(tasks: int, batch: int, retention: int | None) -> dict[str, float]:
    import gc

    from taskloom import TaskManager

    options = {} if retention is None else {"retention": retention}
    manager = TaskManager(max_workers=2, **options)
    # One warm-up batch: imports, executors and caches are not growth.
    warm = [manager.create_task(f"w{i}", fn=int) for i in range(batch)]
    manager.execute_workflow(warm)
    gc.collect()
    before = _rss_mb()
    for b in range(tasks // batch):
        group = [manager.create_task(f"t{b}-{i}", fn=int) for i in range(batch)]
        results = manager.execute_workflow(group)
        if len(results) != batch:
            raise RuntimeError(f"batch {b}: {len(results)} of {batch} completed")
    gc.collect()
    after = _rss_mb()
    remembered = len(manager.get_all_tasks())
    manager.shutdown()
    return {"before_mb": before, "after_mb": after, "growth_mb": after - before,
            "remembered_tasks": remembered}


def measure(tasks: int = 200_000, batch: int = 1_000,
            retention: int | None = None) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter and return its figures."""
    args = [sys.executable, __file__, "--child", str(tasks), str(batch), str(retention or "")]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    print(json.dumps(child(int(sys.argv[2]), int(sys.argv[3]),
                           int(sys.argv[4]) if sys.argv[4] else None)))
elif __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    keep = int(sys.argv[3]) if len(sys.argv) > 3 else None
    f = measure(n, size, keep)
    print(f"{n:,} tasks in batches of {size:,}: RSS {f['before_mb']:.1f} -> {f['after_mb']:.1f}"
          f" MB, growth {f['growth_mb']:.1f} MB (target < 150), "
          f"{int(f['remembered_tasks']):,} tasks remembered")
