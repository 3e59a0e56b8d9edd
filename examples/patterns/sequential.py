"""Sequential workflow: each step runs after the previous one and can take its result."""

from taskloom import SequentialWorkflow, Task

if __name__ == "__main__":
    workflow = SequentialWorkflow("data_pipeline")
    workflow.add_task(Task("extract_data", fn=lambda: ["  a ", " b"]))
    workflow.add_task(
        Task("transform_data", fn=lambda extract_data: [s.strip() for s in extract_data])
    )
    workflow.add_task(Task("load_data", fn=lambda transform_data: len(transform_data)))
    result = workflow.execute()
    print(result)
    assert result == {"status": "completed", "results": [["  a ", " b"], ["a", "b"], 2]}
