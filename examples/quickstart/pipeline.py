"""The README's quick start: a three-step pipeline with a fan-out, on the default engine."""

from taskloom import TaskManager


def extract() -> list[int]:
    return list(range(10))


def square(extract: list[int]) -> list[int]:  # receives extract's result by name
    return [x * x for x in extract]


def total(square: list[int]) -> int:
    return sum(square)


if __name__ == "__main__":
    with TaskManager(max_workers=4) as manager:
        manager.create_task("extract", fn=extract)
        manager.create_task("square", fn=square, dependencies=["extract"])
        report = manager.create_task("total", fn=total, dependencies=["square"])
        print("total =", manager.execute_task(report.id))
