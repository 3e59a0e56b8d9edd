"""FIFO queue: tasks come out in the order they went in."""

from taskloom import Task, TaskQueue

if __name__ == "__main__":
    fifo_queue = TaskQueue(queue_type="fifo")
    for task in [Task("step_1", description="Initialize system"),
                 Task("step_2", description="Load configuration"),
                 Task("step_3", description="Start processing")]:
        fifo_queue.enqueue(task)
    order = []
    while fifo_queue.get_queue_size() > 0:
        task = fifo_queue.dequeue()
        task.execute()
        order.append(task.name)
    print(order)
    assert order == ["step_1", "step_2", "step_3"]
