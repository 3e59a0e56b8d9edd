"""Task dependencies: each task runs after the tasks it depends on and gets their results."""

from taskloom import TaskManager

if __name__ == "__main__":
    with TaskManager(max_workers=4) as manager:
        validation = manager.create_task("data_validation", description="Validate input data",
                                         priority=1, fn=lambda: [3, 1, 2])
        transformation = manager.create_task(
            "data_transformation", description="Transform validated data", priority=2,
            dependencies=["data_validation"], fn=lambda data_validation: sorted(data_validation))
        analysis = manager.create_task(
            "data_analysis", description="Analyze transformed data", priority=3,
            dependencies=["data_transformation"],
            fn=lambda data_transformation: sum(data_transformation),
        )
        results = manager.execute_workflow([validation, transformation, analysis])
        print(results)
        assert results == {"data_validation": [3, 1, 2], "data_transformation": [1, 2, 3],
                           "data_analysis": 6}
