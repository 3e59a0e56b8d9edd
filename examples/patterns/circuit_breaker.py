"""Circuit breaker: after repeated failures the task fails fast until the recovery time."""

from taskloom import CircuitOpenError, TaskManager

calls = []


def external_service_call():
    calls.append(1)
    raise TimeoutError("service did not answer")


if __name__ == "__main__":
    with TaskManager() as manager:
        task = manager.create_task(
            "external_service_call", fn=external_service_call,
            circuit_breaker={"failure_threshold": 3, "recovery_timeout": 30},
        )
        errors = []
        for _ in range(5):
            try:
                manager.execute_task(task.id)
            except Exception as exc:
                errors.append(type(exc).__name__)
        print(errors, "- the service was called", len(calls), "times")
        assert errors[:3] == ["TimeoutError"] * 3
        assert errors[3:] == [CircuitOpenError.__name__] * 2 and len(calls) == 3
