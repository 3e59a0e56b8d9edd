"""The TaskManager API against a model: creating, executing, retrying and listing tasks whose
dependencies ran (or failed) in earlier runs of the manager."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskloom import TaskloomError, TaskManager


class ManagerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.manager = TaskManager(max_workers=2)
        self.order: list[str] = []  # creation order: a task depends only on earlier ones
        self.deps: dict[str, list[str]] = {}
        self.broken: dict[str, bool] = {}  # the body raises while True
        self.status: dict[str, str] = {}
        self.value: dict[str, int] = {}
        self.runs: dict[str, int] = {}  # attempts per task, as the bodies count them
        self.model_runs: dict[str, int] = {}

    def _body(self, name: str) -> Any:
        def body(**upstream: int) -> int:
            self.runs[name] = self.runs.get(name, 0) + 1
            if self.broken[name]:
                raise ValueError(f"{name} is broken")
            return sum(upstream.values()) + 1

        return body

    @rule(data=st.data(), broken=st.booleans())
    def create(self, data: st.DataObject, broken: bool) -> None:
        name = f"t{len(self.order)}"
        deps = data.draw(st.lists(st.sampled_from(self.order), unique=True, max_size=3)
                         if self.order else st.just([]))
        self.manager.create_task(name, fn=self._body(name), dependencies=deps)
        self.order.append(name)
        self.deps[name] = deps
        self.broken[name] = broken
        self.status[name] = "pending"

    def _model_execute(self, name: str) -> None:
        """What one run of ``name`` does: every dependency that did not complete runs first."""
        closure: set[str] = set()
        stack = [name]
        while stack:
            t = stack.pop()
            if t in closure:
                continue
            closure.add(t)
            stack.extend(d for d in self.deps[t] if self.status[d] != "completed")
        for t in self.order:  # creation order is a dependency order
            if t not in closure:
                continue
            if any(self.status[d] != "completed" for d in self.deps[t]):
                self.status[t] = "failed"  # an upstream failed: no attempt
                continue
            self.model_runs[t] = self.model_runs.get(t, 0) + 1
            if self.broken[t]:
                self.status[t] = "failed"
            else:
                self.status[t] = "completed"
                self.value[t] = sum(self.value[d] for d in self.deps[t]) + 1

    @precondition(lambda self: self.order)
    @rule(data=st.data())
    def execute(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.order))
        self._model_execute(name)  # a completed task executed again runs again
        try:
            got = self.manager.execute_task(name)
        except (ValueError, TaskloomError):
            assert self.status[name] == "failed"
        else:
            assert self.status[name] == "completed" and got == self.value[name]

    @precondition(lambda self: any(s == "failed" for s in self.status.values()))
    @rule(data=st.data(), fix=st.booleans())
    def retry(self, data: st.DataObject, fix: bool) -> None:
        name = data.draw(st.sampled_from([t for t, s in self.status.items() if s == "failed"]))
        if fix:
            self.broken[name] = False
        self._model_execute(name)
        self.manager.retry_task(name)
        try:
            got = self.manager.wait_for_task(name, timeout=30)
        except (ValueError, TaskloomError):
            assert self.status[name] == "failed"
        else:
            assert self.status[name] == "completed" and got == self.value[name]

    @precondition(lambda self: self.order)
    @rule(data=st.data())
    def cancel_finished(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.order))
        if self.status[name] != "pending":
            self.manager.cancel_task(name)  # a finished task stays as it is

    @invariant()
    def statuses_and_attempts_match(self) -> None:
        self.manager.shutdown()  # every run closed: nothing is still going
        for status in ("pending", "completed", "failed"):
            want = sorted(t for t, s in self.status.items() if s == status)
            got = sorted(t.name for t in self.manager.list_tasks(status))
            assert got == want, status
        assert self.runs == self.model_runs

    def teardown(self) -> None:
        self.manager.shutdown()


ManagerModel.TestCase.settings = settings(max_examples=40, stateful_step_count=12,
                                          deadline=None)
TestManagerModel = ManagerModel.TestCase
