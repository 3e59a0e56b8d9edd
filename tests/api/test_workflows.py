"""Sequential, parallel and conditional workflows, all on one taskloom engine."""

from __future__ import annotations

import asyncio
import threading

import pytest

from taskloom import (
    ConditionalWorkflow,
    Engine,
    ParallelWorkflow,
    SequentialWorkflow,
    Task,
    TaskState,
    hookimpl,
    load_plugins,
)
from taskloom.api.workflows import run_flow


class Recorder:
    def __init__(self) -> None:
        self.runs: list[str] = []
        self.transitions: list[tuple[str, str]] = []

    @hookimpl
    def taskloom_run_start(self, run: object) -> None:
        self.runs.append(run.name)  # type: ignore[attr-defined]

    @hookimpl
    def taskloom_task_transition(self, task: Task, old: TaskState, new: TaskState,
                                 run: object) -> None:
        self.transitions.append((task.name, new.value))


@pytest.fixture
def recorded() -> tuple[Engine, Recorder]:
    rec = Recorder()
    return Engine(max_workers=4, plugins=load_plugins(plugins=[rec])), rec


def boom() -> None:
    raise ValueError("bad input")


def test_sequential_passes_results_along_and_runs_on_the_engine(recorded) -> None:
    engine, rec = recorded
    wf = SequentialWorkflow("data_pipeline", engine=engine)
    wf.add_task(Task("extract_data", fn=lambda: [1, 2, 3]))
    wf.add_task(Task("transform_data", fn=lambda extract_data: [x * 2 for x in extract_data]))
    wf.add_task(Task("load_data", fn=lambda transform_data: sum(transform_data)))
    assert wf.execute() == {"status": "completed", "results": [[1, 2, 3], [2, 4, 6], 12]}
    assert wf.status == "completed"
    assert rec.runs == ["data_pipeline"]
    # the chain is the workflow's, not the tasks': nothing left behind
    assert wf.tasks[1].dependencies == []


def test_sequential_stops_at_the_failed_step(recorded) -> None:
    engine, _ = recorded
    ran: list[str] = []
    wf = SequentialWorkflow("wf", engine=engine)
    wf.add_task(Task("a", fn=lambda: ran.append("a")))
    wf.add_task(Task("b", fn=boom))
    wf.add_task(Task("c", fn=lambda: ran.append("c")))
    assert wf.execute() == {"status": "failed", "error": "bad input", "step": 2}
    assert ran == ["a"] and wf.status == "failed"
    assert wf.tasks[2].status is TaskState.FAILED


def test_parallel_runs_at_once_and_records_errors(recorded) -> None:
    engine, rec = recorded
    barrier = threading.Barrier(3, timeout=5)
    wf = ParallelWorkflow("batch_processing", max_workers=4, engine=engine)
    for i in range(3):
        wf.add_task(Task(f"process_batch_{i + 1}", fn=lambda i=i: (barrier.wait(), i)[1]))
    wf.add_task(Task("broken", fn=boom))
    # three bodies meet at the barrier: they really ran concurrently
    assert wf.execute_parallel() == {"process_batch_1": 0, "process_batch_2": 1,
                                     "process_batch_3": 2, "broken": {"error": "bad input"}}
    assert rec.runs == ["batch_processing"]
    assert asyncio.run(wf.execute_async())["broken"] == {"error": "bad input"}


def test_parallel_default_engine_honours_max_workers() -> None:
    wf = ParallelWorkflow("w", max_workers=3)
    assert wf.engine.create_executor(None).max_workers == 3


def test_conditional_branches_see_the_context_and_skip_what_is_not_taken(recorded) -> None:
    engine, rec = recorded
    wf = ConditionalWorkflow("smart_processing", engine=engine)
    wf.add_step(Task("validate_input", fn=lambda: {"status": "success"}),
                condition=lambda ctx: ctx.get("input_available", True))
    wf.add_branch(condition=lambda ctx: ctx.get("data_size", 0) > 1000,
                  true_task=Task("parallel_processing", fn=lambda: {"status": "success"}),
                  false_task=Task("sequential_processing"))
    wf.add_step(Task("generate_report", fn=lambda context: context.data["data_size"]),
                condition=lambda ctx: ctx.get("last_result", {}).get("status") == "success")
    wf.add_step(Task("never"), condition=lambda ctx: False)
    context = {"input_available": True, "data_size": 1500}
    result = wf.execute(context)
    assert result["status"] == "completed"
    assert result["results"] == [{"status": "success"}, {"status": "success"}, 1500]
    assert result["context"] is context and context["last_result"] == 1500
    states = {t.name: t.status for t in wf.tasks}
    assert states["sequential_processing"] is TaskState.SKIPPED
    assert states["never"] is TaskState.SKIPPED
    assert ("never", "skipped") in rec.transitions  # observers see the skip
    assert rec.runs == ["smart_processing"]


def test_conditional_failure_stops_and_skips_the_rest(recorded) -> None:
    engine, _ = recorded
    wf = ConditionalWorkflow("c", engine=engine)
    wf.add_step(Task("first", fn=boom))
    wf.add_step(Task("second", fn=lambda: 1))
    result = wf.execute()
    assert (result["status"], result["step"], result["error"]) == ("failed", 1, "bad input")
    assert wf.tasks[1].status is TaskState.SKIPPED


def test_a_condition_that_raises_fails_the_workflow(recorded) -> None:
    engine, _ = recorded
    wf = ConditionalWorkflow("c", engine=engine)
    wf.add_step(Task("only", fn=lambda: 1), condition=lambda ctx: ctx["missing"])
    result = wf.execute({})
    assert result["status"] == "failed" and result["step"] == 1
    assert "KeyError" in result["error"]


def test_flow_decides_when_predicates_after_dependencies(recorded) -> None:
    engine, _ = recorded
    seen: list[dict] = []

    def keep(ctx: dict) -> bool:
        seen.append(ctx)
        return ctx["last_result"] > 1

    tasks = [
        Task("a", fn=lambda: 1),
        Task("b", fn=lambda a: a + 1, dependencies=["a"]),
        Task("c", fn=lambda: "c", dependencies=["a"]),
        Task("d", fn=lambda: "d", dependencies=["c"]),
        Task("e", fn=lambda: "e", dependencies=["b"]),
    ]
    summary = run_flow(engine, tasks, {"c": lambda ctx: ctx["last_result"] > 1, "e": keep},
                       data={"env": "test"})
    assert summary.results == {"a": 1, "b": 2, "e": "e"}
    assert summary.counts == {"completed": 3, "skipped": 2}
    assert seen[0]["env"] == "test" and seen[0]["results"] == {"a": 1, "b": 2}


def test_run_add_skipped_is_a_transition_and_dependents_follow_their_rules(recorded) -> None:
    engine, rec = recorded
    run = engine.open_run(name="skips")
    tasks = [
        Task("a", fn=lambda: 1),
        Task("b", fn=lambda: 2, dependencies=["a"]),
        Task("c", fn=lambda: 3, dependencies=["b"]),
        Task("d", fn=lambda: 4, dependencies=["b"], trigger_rule="all_done"),
    ]
    run.add(tasks, skipped=["b"])
    run.start()
    run.wait()
    summary = run.close()
    assert summary.results == {"a": 1, "d": 4}
    assert summary.counts == {"completed": 2, "skipped": 2}
    assert ("b", "skipped") in rec.transitions and ("c", "skipped") in rec.transitions


def test_flow_does_not_ask_a_condition_after_an_upstream_failure() -> None:
    asked = []

    def predicate(ctx):
        asked.append(ctx)
        return True

    def boom():
        raise RuntimeError("no input")

    tasks = [Task("extract", fn=boom), Task("flag", fn=lambda: "ran", dependencies=["extract"])]
    summary = run_flow(Engine(), tasks, {"flag": predicate})
    flag = summary.tasks[1] if summary.tasks[1].name == "flag" else summary.tasks[0]
    assert asked == []
    assert flag.status == "failed" and "upstream task 'extract' failed" in flag.error
