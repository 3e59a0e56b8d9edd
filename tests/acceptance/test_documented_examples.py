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


@pytest.mark.parametrize("script", PATTERNS, ids=lambda p: p.stem)
def test_pattern_example_runs(script: Path) -> None:
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


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
