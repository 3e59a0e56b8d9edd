"""Error policies: retry, timeout, circuit breaker, fallback and error handlers.

Each module is its own plugin (entry points ``retry``, ``timeout``, ``circuit_breaker``,
``fallback``), so any of them can be disabled by name. They read the task options of the same
name and decide in ``taskloom_task_error`` in a fixed order:

1. ``circuit_breaker`` records every failure of a task it guards in the
   ``taskloom_attempt_failed`` observer, called before any decision, so the breaker sees each
   attempt, retried or not, whichever policy decides. In ``taskloom_task_error``
   (``tryfirst``) it decides only for its own
   :class:`~taskloom_std.policies.circuit_breaker.CircuitOpenError` when configured to
   ``wait``: the task is retried when the breaker's recovery time is up. Otherwise it leaves
   the decision to the others.
2. ``retry`` runs the task again while its budget lasts and the error qualifies. It never
   retries an open circuit or a cancellation.
3. ``fallback`` (``trylast``): only once retrying is over do the error handlers (by exception
   type, most specific first) and then the fallback value or callable complete the task.

When nobody decides, the task fails with its last error.
"""
