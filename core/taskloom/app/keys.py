"""The configuration keys the core reads, as data: the validator checks them and the
configuration reference is generated from them (``docs/build.py``)."""

from __future__ import annotations

from taskloom.kernel.schema import Key
from taskloom.kernel.task import TRIGGER_RULES

ENGINE_KEYS: dict[str, Key] = {
    "queue": Key(("string",), "queue strategy that orders ready tasks", component="queue"),
    "executor": Key(
        ("string", "table"),
        'default executor: a name, or {kind = "thread", max_workers = 8, ...} with its options',
        component="executor",
    ),
    "max_workers": Key(("integer",), "attempts running at once", minimum=1),
    "store": Key(("string",), "where runs and results are recorded", component="store"),
    "store_options": Key(("table",), "options of the store (path, durability, ...)"),
    "disable_plugins": Key(("array",), "plugins (entry-point names) not to load", items="string"),
    "strict": Key(("boolean",), "a plugin that fails to load is an error, not a warning"),
    "limits": Key(("table",), "per-tag concurrency limits: {db = 2}"),
    "rate_limits": Key(("table",), "per-tag start rates: {api = {n = 10, period = 1.0}}"),
    "executors": Key(("table",), "options of executors that tasks ask for by name"),
    "hook_watchdog": Key(("number",), "seconds after which a plugin's hook call still running "
                         "is logged, naming the plugin and hook (again as its time doubles); "
                         "> 0, default off"),
    "retention": Key(("table",), 'after each `taskloom run`, delete old runs from its store: '
                     '{older_than = "30d", keep = 100} (see taskloom prune)'),
    "on_stop": Key(("string",), "what `taskloom schedule` does on SIGTERM/SIGINT with runs "
                   "still going: wait for them, or cancel them", choices=("wait", "cancel")),
    "max_active_runs": Key(("integer",), "runs of a workflow going at once, across the "
                           "processes sharing the store", minimum=1),
    "on_limit": Key(("string",), "a run over max_active_runs waits for a place, or is refused "
                    "(exit 2) (default: wait)", choices=("wait", "refuse")),
    "on_conflict": Key(("string",), "a run id running in another process is waited for (its "
                       "outcome returned) or an error naming that process (default: wait)",
                       choices=("wait", "error")),
}

#: Keys of ``retention = {...}``: runs that ended longer ago than ``older_than`` are deleted,
#: except the ``keep`` newest; a running run never is.
RETENTION_KEYS: dict[str, Key] = {
    "older_than": Key(("string",), 'an age: "30d", "12h", "2w", "1d12h"'),
    "keep": Key(("integer",), "the newest runs kept whatever their age", minimum=0),
}

#: Keys of ``executor = {...}`` the core reads; the rest are the executor's own options.
EXECUTOR_TABLE_KEYS: dict[str, Key] = {
    "kind": Key(("string",), "executor name", component="executor", required=True),
    "max_workers": Key(("integer",), "attempts running at once", minimum=1),
}

TASK_KEYS: dict[str, Key] = {
    "call": Key(("string",), 'the body, "module:function" (imported when the run starts)'),
    "description": Key(("string",), "what the task does"),
    "priority": Key(("integer",), "1 (highest) to 10 (lowest)", minimum=1, maximum=10),
    "depends_on": Key(("array",), "names of the tasks this one needs", items="string"),
    "tags": Key(("array",), "labels for limits, fair queueing and breakers", items="string"),
    "config": Key(("table",), "free-form settings the body reads (context.config)"),
    "trigger_rule": Key(("string",), "when to run given upstream outcomes", choices=TRIGGER_RULES),
    "executor": Key(("string",), "run this task on another executor", component="executor"),
    "deadline": Key(("number", "datetime"), "for the deadline queue: POSIX seconds or a date"),
    "when": Key(("string",), '"module:predicate": run only when it returns true, else skip'),
    "options": Key(("table",), "options for plugins, as a table (or each at the top level: "
                   "the options the installed plugins declare are listed below)"),
    "map": Key(("string", "table"), 'run once per element of an upstream result or a '
               'parameter: "files", or {over = "files", as = "path", key = "id"}'),
    "subflow": Key(("string", "table"), 'run another workflow as a child run: "child.toml", or '
                   '{file = "child.toml", params = {day = "{params.date}"}}'),
    "wait_for": Key(("string",), "wait for this signal (taskloom signal RUN NAME): its payload "
                    "is the result; no worker is held"),
    "wait_timeout": Key(("number",), "seconds a wait_for step waits before it fails",
                        minimum=0),
    "payload_schema": Key(("table",), 'the signal payload\'s fields and types: {approved = '
                          '"bool", "note?" = "str"}'),
    "sleep": Key(("number",), "wait this many seconds (a timer that survives a restart)",
                 minimum=0),
    "wait_until": Key(("string", "datetime"), 'wait until this time (ISO, or "{params.NAME}")'),
    "args": Key(("table",), 'keyword arguments for the call; "{params.NAME}" is a run '
                "parameter"),
}

SCHEDULE_KEYS: dict[str, Key] = {
    "task": Key(("string",), "the task to run (with what it depends on)", required=True),
    "id": Key(("string",), "a stable job id (default: the task name and trigger)"),
    "cron": Key(("string",), 'cron expression, "30 2 * * *", or @hourly, @daily, @weekly, '
                '@monthly, @yearly'),
    "interval": Key(("number", "table"), "seconds, or {weeks, days, hours, minutes, seconds}"),
    "at": Key(("datetime", "string"), "run once at this time"),
    "trigger": Key(("string",), "a trigger type registered by a plugin", component="trigger"),
    "options": Key(("table",), "options of that trigger"),
    "timezone": Key(("string",), "IANA time zone of cron and at, e.g. Europe/Berlin"),
    "ambiguous": Key(("string",), "cron: a local time repeated at fall back runs once or at both "
                     "occurrences (default: once for a fixed time, both when the minute or hour "
                     "field starts with *)", choices=("once", "both")),
    "nonexistent": Key(("string",), "cron: a local time skipped at spring forward runs once right "
                       "after the gap (shift) or not at all (skip) (default: shift for a fixed "
                       "time, skip when the minute or hour field starts with *)",
                       choices=("shift", "skip")),
    "misfire_grace_time": Key(("number",), "seconds late a run may still start", minimum=0),
    "coalesce": Key(("boolean",), "many missed runs become one"),
    "max_instances": Key(("integer",), "runs of this job at once in this scheduler", minimum=1),
    "max_active_runs": Key(("integer",), "runs of this job at once across the processes "
                           "sharing the store; a fire over it is skipped (default: [taskloom] "
                           "max_active_runs)", minimum=1),
    "reuse_upstream": Key(("boolean",), "a fire reuses the results of upstream tasks that "
                          "completed before instead of running them afresh"),
    "jitter": Key(("number",), "random delay up to this many seconds", minimum=0),
}

INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")

#: The root of a configuration file.
ROOT_KEYS = ("taskloom", "tasks", "schedules", "params")
