"""Every documented pattern runs: examples/patterns/*.py each in its own process, and the
documented workflow examples in this process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taskloom import ConditionalWorkflow, ParallelWorkflow, SequentialWorkflow, Task

PATTERNS = sorted((Path(__file__).resolve().parents[2] / "examples" / "patterns").glob("*.py"))
EXPECTED = {"basic_task", "dependencies", "priority_queue", "fifo_queue", "sequential",
            "parallel", "conditional", "retry", "circuit_breaker"}


def test_every_documented_pattern_has_an_example() -> None:
    assert {p.stem for p in PATTERNS} == EXPECTED


@pytest.fixture(scope="module")
def pattern_runs() -> dict[str, tuple[int, str, str]]:
    """Every pattern script started at once, each in its own process: (status, out, err)."""
    procs = {p.stem: subprocess.Popen([sys.executable, str(p)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=p.parent)
             for p in PATTERNS}
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        done[name] = (proc.returncode, out, err)
    return done


@pytest.mark.parametrize("script", PATTERNS, ids=lambda p: p.stem)
def test_pattern_example_runs(script: Path, pattern_runs: dict[str, tuple[int, str, str]]) -> None:
    status, out, err = pattern_runs[script.stem]
    assert status == 0, err
    assert out.strip()


def test_documented_sequential_usage() -> None:
    workflow = SequentialWorkflow("data_pipeline")
    workflow.add_task(Task("extract_data"))
    workflow.add_task(Task("transform_data"))
    workflow.add_task(Task("load_data"))
    assert workflow.execute() == {"status": "completed", "results": [None, None, None]}


def test_documented_parallel_usage() -> None:
    parallel_workflow = ParallelWorkflow("batch_processing", max_workers=8)
    parallel_workflow.add_task(Task("process_batch_1"))
    parallel_workflow.add_task(Task("process_batch_2"))
    parallel_workflow.add_task(Task("process_batch_3"))
    results = parallel_workflow.execute_parallel()
    assert results == {"process_batch_1": None, "process_batch_2": None,
                       "process_batch_3": None}


def test_documented_conditional_usage() -> None:
    # The page's tasks have no bodies; here they report success so the last condition holds.
    ok = {"status": "success"}
    conditional_workflow = ConditionalWorkflow("smart_processing")
    conditional_workflow.add_step(Task("validate_input", fn=lambda: ok),
                                  condition=lambda ctx: ctx.get("input_available", True))
    conditional_workflow.add_branch(
        condition=lambda ctx: ctx.get("data_size", 0) > 1000,
        true_task=Task("parallel_processing", fn=lambda: ok),
        false_task=Task("sequential_processing", fn=lambda: ok),
    )
    conditional_workflow.add_step(
        Task("generate_report", fn=lambda: "report"),
        condition=lambda ctx: ctx.get("last_result", {}).get("status") == "success",
    )
    result = conditional_workflow.execute({"input_available": True, "data_size": 1500})
    assert result["status"] == "completed"
    assert result["results"] == [ok, ok, "report"]
    assert result["context"]["last_result"] == "report"
