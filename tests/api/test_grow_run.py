"""A body adding tasks to its own run (an agent planning its next steps)."""

from __future__ import annotations

from taskloom import Engine, Task, TaskState
from taskloom.kernel.errors import DuplicateTaskError, TaskloomError


def test_a_planner_adds_steps_that_run_and_are_recorded(tmp_path):
    def step(n: int):
        return lambda planner: f"step {n} after {planner}"

    def planner(context):
        context.add_tasks([Task(f"step{n}", fn=step(n), dependencies=["planner"])
                           for n in range(3)])
        context.add_tasks([Task("summary", dependencies=["step0", "step1", "step2"],
                                fn=lambda step0, step1, step2: [step0, step1, step2])])
        return "plan"

    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(tmp_path / "g.db")})
    try:
        summary = engine.run([Task("planner", fn=planner)], run_id="grow")
        detail = engine.store.detail("grow")
    finally:
        engine.close()
    assert summary.ok, summary.errors
    assert summary.results["summary"] == [f"step {n} after plan" for n in range(3)]
    recorded = {t.name: t.state for t in detail.tasks}
    assert recorded == {"planner": "completed", "step0": "completed", "step1": "completed",
                        "step2": "completed", "summary": "completed"}


def test_added_tasks_are_validated_like_any_batch():
    errors: list[BaseException] = []

    def planner(context):
        for batch in ([Task("planner")],
                      [Task("x", dependencies=["nowhere"])],
                      [Task("a", dependencies=["b"]), Task("b", dependencies=["a"])]):
            try:
                context.add_tasks(batch)
            except TaskloomError as exc:
                errors.append(exc)
        return len(errors)

    summary = Engine().run([Task("planner", fn=planner)])
    assert summary.results["planner"] == 3
    assert isinstance(errors[0], DuplicateTaskError)
    assert "nowhere" in str(errors[1])
    assert "cycle" in str(errors[2]).lower()
    assert [t.name for t in summary.tasks] == ["planner"]
    assert summary.tasks[0].status is TaskState.COMPLETED
