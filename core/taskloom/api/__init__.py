"""The API layer over the kernel: TaskManager, workflows, the TaskQueue facade, scheduling."""
