"""Load, checked for correctness only: four ``taskloom schedule`` processes on one database
share 1,000 jobs, each due once over ten seconds; every job runs exactly once. The timings
this reports are figures for the benchmark (``bench_schedulers.py``), never asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from taskloom_postgres.cluster import find_bin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_schedulers import run

pytestmark = pytest.mark.slow


def test_four_schedulers_fire_each_of_a_thousand_jobs_exactly_once(postgres_cluster):
    if postgres_cluster is None or find_bin() is None:
        pytest.skip("PostgreSQL is not installed here (set CI to make this a failure)")
    report = run(schedulers=4, jobs=1000, spread=10.0, fsync=False)
    assert report["exit_codes"] == [0, 0, 0, 0], report["errors"]
    assert (report["doubled"], report["missed"]) == (0, 0), report
    assert report["executions"] == report["claims"] == report["completed_runs"] == 1000
    assert len(report["runs_per_scheduler"]) >= 2  # the load was shared, not one process's
