"""Priority queue: tasks come out best priority first (1 = highest)."""

from taskloom import Task, TaskQueue

if __name__ == "__main__":
    queue = TaskQueue(queue_type="priority")
    queue.enqueue(Task("feature_update", priority=5))
    queue.enqueue(Task("urgent_fix", priority=1))  # will be processed first
    queue.enqueue(Task("cleanup", priority=9))
    order = []
    while queue.get_queue_size() > 0:
        task = queue.dequeue()
        print(f"Processing: {task.name} (priority: {task.priority})")
        task.execute()
        order.append(task.name)
    assert order == ["urgent_fix", "feature_update", "cleanup"]
