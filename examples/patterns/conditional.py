"""Conditional workflow: steps and branches decided on a context dict; others are skipped."""

from taskloom import ConditionalWorkflow, Task

if __name__ == "__main__":
    conditional_workflow = ConditionalWorkflow("smart_processing")
    conditional_workflow.add_step(
        Task("validate_input", fn=lambda: {"status": "success"}),
        condition=lambda ctx: ctx.get("input_available", True),
    )
    conditional_workflow.add_branch(
        condition=lambda ctx: ctx.get("data_size", 0) > 1000,
        true_task=Task("parallel_processing", fn=lambda: {"status": "success", "mode": "parallel"}),
        false_task=Task("sequential_processing", fn=lambda: {"status": "success"}),
    )
    conditional_workflow.add_step(
        Task("generate_report", fn=lambda: "report ready"),
        condition=lambda ctx: ctx.get("last_result", {}).get("status") == "success",
    )
    result = conditional_workflow.execute({"input_available": True, "data_size": 1500})
    print(result["status"], result["results"])
    skipped = [t.name for t in conditional_workflow.tasks if t.get_status() == "skipped"]
    print("skipped:", skipped)
    assert result["status"] == "completed" and result["results"][-1] == "report ready"
    assert skipped == ["sequential_processing"]
