"""Retries: a flaky task runs again after a backoff, on the engine's timer (no worker sleeps)."""

from taskloom import TaskManager

calls = []


def flaky_api_call():
    calls.append(1)
    if len(calls) < 3:
        raise ConnectionError(f"attempt {len(calls)}: service unavailable")
    return {"status": 200}


if __name__ == "__main__":
    with TaskManager() as manager:
        task = manager.create_task(
            "api_call", description="Call external API", fn=flaky_api_call,
            retry={"max_retries": 5, "backoff": "exponential", "base_delay": 0.01,
                   "backoff_factor": 1.5},
        )
        result = manager.execute_task(task.id)
        print(result, "after", task.attempts, "attempts")
        assert result == {"status": 200} and task.attempts == 3
