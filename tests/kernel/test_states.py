import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskloom import TRANSITIONS, InvalidTransition, Task, TaskState
from taskloom.kernel.states import TERMINAL, check_transition

ALL = list(TaskState)


def test_state_is_a_string():
    assert TaskState.COMPLETED == "completed"
    assert Task("t").status == "pending"
    assert str(TaskState.RUNNING) == "running"


def test_table_covers_every_state_and_design_edges():
    assert set(TRANSITIONS) == set(TaskState)
    for old, news in {
        "pending": {"waiting", "ready", "cancelled", "skipped"},
        "waiting": {"ready", "cancelled", "skipped", "failed"},
        "ready": {"running", "cancelled"},
        "running": {"completed", "failed", "cancelled", "retrying"},
        "retrying": {"running", "cancelled"},
        "failed": {"retrying"},
    }.items():
        assert {s.value for s in TRANSITIONS[TaskState(old)]} >= news


@given(st.sampled_from(ALL), st.sampled_from(ALL))
def test_check_transition_matches_table(old, new):
    if new in TRANSITIONS[old]:
        check_transition("t", old, new)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition("t", old, new)
        assert info.value.task == "t"
        assert old.value in str(info.value) and new.value in str(info.value)


def test_illegal_transition_names_task_and_states():
    task = Task("load")
    with pytest.raises(InvalidTransition, match=r"task 'load': illegal transition pending -> running"):
        task._move(TaskState.RUNNING)


def test_terminal_states():
    assert {s.value for s in TERMINAL} == {"completed", "failed", "cancelled", "skipped"}
    assert TaskState.FAILED.is_terminal and not TaskState.RUNNING.is_terminal
