"""A user's script, type-checked from outside the repository: `import taskloom` must resolve
to the installed package with real types (CI runs mypy --strict on this file)."""

from taskloom import DependencyGraph, Engine, Task, TaskManager, TaskState


def double(x: int) -> int:
    return 2 * x


def main() -> None:
    task = Task("double", fn=double, priority=3)
    state: TaskState = task.status
    graph = DependencyGraph()
    graph.add_task(task.name, priority=task.priority)
    order: list[str] = graph.topological_sort()
    with TaskManager(max_workers=2) as manager:
        manager.create_task("one", fn=lambda: 1)
    summary = Engine().run([Task("t", fn=lambda: 1)])
    status: str = summary.status
    print(state, order, status)


if __name__ == "__main__":
    main()
