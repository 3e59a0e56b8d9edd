"""Basic task creation: a task with a description, priority and config, run by a manager."""

from taskloom import TaskManager


def process(context):  # receives the task's context; its config is context.config
    cfg = context.config
    return {"processed": cfg["batch_size"], "from": cfg["input_path"]}


if __name__ == "__main__":
    with TaskManager() as manager:
        task = manager.create_task(
            name="data_processing",
            description="Process incoming data files",
            priority=1,
            config={"input_path": "data/raw", "output_path": "data/processed", "batch_size": 100},
            fn=process,
        )
        result = manager.execute_task(task.id)
        print("status:", manager.get_task_status(task.id), "result:", result)
        assert result == {"processed": 100, "from": "data/raw"}
