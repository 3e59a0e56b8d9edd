"""Fallbacks and error handlers: the documented RobustTask behaviour as task configuration."""

import logging

import pytest

from taskloom import ConfigError, Engine, Fail, Retry, Task, TaskState, load_plugins


def raises(error):
    def body():
        raise error

    return body


def test_fallback_value_completes_the_task_and_keeps_the_error():
    s = Engine().run([Task("t", fn=raises(ValueError("bad")), fallback={"data": []})])
    task = s.tasks[0]
    assert task.status is TaskState.COMPLETED and task.result == {"data": []}
    assert task.error == "bad" and task.error_type == "ValueError"


def test_fallback_callable_receives_error_and_task():
    seen = []

    def fallback(error, task):
        seen.append((type(error), task.name))
        return {"status": "fallback", "data": []}

    s = Engine().run([Task("api_data_fetch", fn=raises(KeyError("x")), fallback=fallback)])
    assert s.results == {"api_data_fetch": {"status": "fallback", "data": []}}
    assert seen == [(KeyError, "api_data_fetch")]


def test_documented_robust_task_scenario():
    def create_fallback_result(error):
        return {"status": "completed_with_errors", "error": str(error), "fallback_used": True,
                "partial_result": None}

    def handle_connection_error(error, task):
        return create_fallback_result(error)

    def handle_validation_error(error, task):
        return {"status": "validation_failed", "error": str(error)}

    def robust(name, error):
        task = Task(name, fn=raises(error),
                    fallback=lambda e, t: {"status": "fallback", "data": []})
        task.register_error_handler(ConnectionError, handle_connection_error)
        task.register_error_handler(ValueError, handle_validation_error)
        return task

    s = Engine().run([
        robust("conn", ConnectionRefusedError("refused")),
        robust("valid", ValueError("bad row")),
        robust("other", KeyError("k")),
    ])
    assert s.results == {
        "conn": {"status": "completed_with_errors", "error": "refused", "fallback_used": True,
                 "partial_result": None},
        "valid": {"status": "validation_failed", "error": "bad row"},
        "other": {"status": "fallback", "data": []},
    }


def test_most_specific_handler_wins_whatever_the_registration_order():
    task = Task("t", fn=raises(ConnectionRefusedError()))
    task.register_error_handler(OSError, lambda e, t: "os")
    task.register_error_handler(ConnectionError, lambda e, t: "connection")
    task.register_error_handler(ConnectionRefusedError, lambda e, t: "refused")
    other = Task("u", fn=raises(ConnectionResetError()),
                 error_handlers={OSError: lambda e, t: "os", "builtins.KeyError": lambda e, t: 0})
    s = Engine().run([task, other])
    assert s.results == {"t": "refused", "u": "os"}


def test_a_failing_handler_falls_through_to_the_next(caplog):
    def broken(error, task):
        raise RuntimeError("handler broke")

    task = Task("t", fn=raises(ConnectionRefusedError()), fallback="fallback",
                error_handlers={ConnectionRefusedError: broken, OSError: broken})
    with caplog.at_level(logging.ERROR, logger="taskloom.policies.fallback"):
        s = Engine().run([task])
    assert s.results == {"t": "fallback"}
    assert sum("error handler" in r.getMessage() for r in caplog.records) == 2


def test_failing_fallback_leaves_the_original_error():
    def broken(error, task):
        raise RuntimeError("fallback broke")

    s = Engine().run([Task("t", fn=raises(ValueError("original")), fallback=broken)])
    task = s.tasks[0]
    assert task.status is TaskState.FAILED and task.error == "original"


def test_fallback_only_after_retries_are_exhausted():
    calls = []

    def body():
        calls.append(1)
        raise TimeoutError("slow upstream")

    task = Task("t", fn=body, fallback="cached copy",
                retry={"max_retries": 2, "base_delay": 0})
    s = Engine().run([task])
    assert len(calls) == 3 and task.attempts == 3
    assert s.results == {"t": "cached copy"}


def test_handlers_may_return_a_decision():
    calls = []

    def body():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        raise PermissionError("denied")

    replacement = RuntimeError("replaced")
    task = Task("t", fn=body, error_handlers={
        ConnectionError: lambda e, t: Retry(0),
        PermissionError: lambda e, t: Fail(replacement),
    })
    Engine().run([task])
    assert len(calls) == 2 and task.status is TaskState.FAILED
    assert task.exception is replacement


def test_downstream_receives_the_fallback_result():
    s = Engine().run([
        Task("fetch", fn=raises(OSError("down")), fallback=[]),
        Task("count", fn=lambda fetch: len(fetch), dependencies=["fetch"]),
    ])
    assert s.ok and s.results["count"] == 0


def test_disabling_the_plugin_by_name_makes_its_option_an_error_naming_it():
    engine = Engine(plugins=load_plugins(disable=["fallback"]))
    with pytest.raises(ConfigError, match="task 't': option 'fallback' needs plugin "
                                          "'fallback', which is disabled"):
        engine.run([Task("t", fn=raises(ValueError("x")), fallback=1)])
    s = engine.run([Task("t", fn=raises(ValueError("x")))])
    assert s.tasks[0].status is TaskState.FAILED


@pytest.mark.parametrize(("handlers", "message"), [
    ({ValueError: "not callable"}, "error_handlers[<class 'ValueError'>] must be callable"),
    ({"nosuch.module:Err": print}, "error_handlers['nosuch.module:Err']: cannot import"),
    ({"builtins.print": print}, "'builtins.print' is not an exception type"),
    ([print], "error_handlers must be a mapping"),
])
def test_invalid_handlers_name_task_and_key(handlers, message):
    with pytest.raises(ConfigError) as info:
        Engine().run([Task("load", fn=lambda: 1, error_handlers=handlers)])
    assert "task 'load': " in str(info.value) and message in str(info.value)


def test_register_error_handler_rejects_non_callables():
    with pytest.raises(TypeError, match="task 't'"):
        Task("t").register_error_handler(ValueError, "nope")
