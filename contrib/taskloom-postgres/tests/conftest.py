"""A throwaway PostgreSQL server for this package's tests (see the README's "Tests")."""

from __future__ import annotations

import pytest

from taskloom_postgres.cluster import Cluster, new_database, server_for_tests


@pytest.fixture(scope="session")
def postgres_cluster():
    with server_for_tests() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_dsn(postgres_cluster: Cluster | None) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/taskloom_test``: one database for the session."""
    if postgres_cluster is None:
        pytest.skip("PostgreSQL is not installed here (set CI to make this a failure)")
    return postgres_cluster.create_database("taskloom_test")


@pytest.fixture
def fresh_dsn(postgres_cluster: Cluster | None) -> str:
    """A new empty database for one test."""
    if postgres_cluster is None:
        pytest.skip("PostgreSQL is not installed here (set CI to make this a failure)")
    return new_database(postgres_cluster)


@pytest.fixture(autouse=True)
def _store_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKLOOM_STORE_KEY", str(tmp_path / "store.key"))
