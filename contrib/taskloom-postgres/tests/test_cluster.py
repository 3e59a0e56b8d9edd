"""The throwaway server the tests use: without PostgreSQL, tests skip here and fail in CI."""

from __future__ import annotations

import psycopg
import pytest

from taskloom_postgres.cluster import Cluster, ClusterError, server_for_tests


def test_the_session_server_is_on_loopback_and_serves_the_test_database(postgres_dsn):
    assert postgres_dsn.startswith("postgresql://postgres@127.0.0.1:")
    assert postgres_dsn.endswith("/taskloom_test")
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("taskloom_test",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)


def test_missing_binaries_are_a_clear_error(tmp_path):
    with pytest.raises(ClusterError, match="PostgreSQL is not installed"):
        Cluster(bin_dir=tmp_path)


def _cannot_start() -> Cluster:
    raise ClusterError("PostgreSQL is not installed (no initdb found)")


def test_a_server_that_cannot_start_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.warns(UserWarning, match="PostgreSQL tests skipped"), server_for_tests(
        _cannot_start, lambda: None
    ) as cluster:
        assert cluster is None
    monkeypatch.setenv("CI", "1")
    with pytest.raises(ClusterError, match="not installed"), server_for_tests(
        _cannot_start, lambda: None
    ):
        pass


def test_a_stopped_cluster_leaves_nothing_behind():
    cluster = Cluster()
    cluster.start()
    root = cluster.root
    assert root is not None and (root / "data" / "PG_VERSION").exists()
    dsn = cluster.create_database("gone")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    cluster.stop()
    assert not root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
