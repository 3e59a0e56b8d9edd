"""The hooks the scheduler calls, declared by this plugin (``taskloom_addhooks``).

An implementation in another plugin should be marked ``@hookimpl(optionalhook=True)`` so it
loads when the scheduling plugin is disabled.
"""

from __future__ import annotations

import datetime
from typing import Any

from taskloom.kernel.hookspecs import observer


class HookSpecs:
    """The scheduler's hooks (added to a plugin set by ``taskloom_addhooks``)."""

    @staticmethod
    @observer
    def taskloom_schedule_fire(
        job: Any, scheduled_for: datetime.datetime, fired_at: datetime.datetime
    ) -> None:
        """A scheduled job fired.

        When: each time the scheduler starts a job's run.

        ``job``: the scheduler's :class:`~taskloom_std.scheduling.scheduler.Job` (``job.id``,
        ``job.task``, ``job.trigger``).
        ``scheduled_for``: the aware datetime it was due. ``fired_at``: when it really started.

        Return: ignored (observer).
        """

    @staticmethod
    @observer
    def taskloom_schedule_misfire(
        job: Any, scheduled_for: datetime.datetime, fired_at: datetime.datetime
    ) -> None:
        """A scheduled run was skipped because it was later than the job's misfire grace time.

        When: when the scheduler notices a due time that is too old to run.

        ``job``: the job. ``scheduled_for``: the missed due time. ``fired_at``: when it was
        noticed.

        Return: ignored (observer).
        """

    @staticmethod
    @observer
    def taskloom_schedule_overlap(job: Any, scheduled_for: datetime.datetime,
                                  fired_at: datetime.datetime, running: int) -> None:
        """A scheduled run was skipped: its job was at ``max_instances`` or ``max_active_runs``.

        ``max_instances`` counts this scheduler's runs of the job, ``max_active_runs`` those of
        every process sharing the store; ``job.skipped_by`` says which limit it was.

        When: when the scheduler's background thread reaches a due time and finds that many runs
        of the job still in progress (``run_pending`` waits for one to end instead, and the
        missed runs of a catch-up wait for each other, so neither skips).

        ``job``: the job. ``scheduled_for``: the skipped due time (aware datetime).
        ``fired_at``: when the skip happened. ``running``: how many runs of the job were going.

        Return: ignored (observer).
        """
