"""Parallel workflow: independent tasks at once; a failure is recorded, not raised."""

import asyncio

from taskloom import ParallelWorkflow, Task


def process(n):
    return lambda: sum(range(n))


if __name__ == "__main__":
    parallel_workflow = ParallelWorkflow("batch_processing", max_workers=8)
    parallel_workflow.add_task(Task("process_batch_1", fn=process(10)))
    parallel_workflow.add_task(Task("process_batch_2", fn=process(100)))
    parallel_workflow.add_task(Task("process_batch_3", fn=lambda: 1 / 0))
    results = parallel_workflow.execute_parallel()  # with the engine's worker threads
    print(results)
    assert results == {"process_batch_1": 45, "process_batch_2": 4950,
                       "process_batch_3": {"error": "division by zero"}}
    assert asyncio.run(parallel_workflow.execute_async()) == results  # or as a coroutine
