"""A throwaway PostgreSQL server for tests and benchmarks: a new cluster in a temporary
folder, on a free loopback port, removed when stopped.

``initdb`` and ``postgres`` refuse to run as root, so as root the cluster belongs to the
unprivileged ``postgres`` account (``runuser``). The binaries are found in
``$TASKLOOM_PG_BIN``, else the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's
layout), else on ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

#: Environment variable naming the folder of ``initdb``, ``pg_ctl`` and ``postgres``.
BIN_ENV = "TASKLOOM_PG_BIN"
_USER = "postgres"


class ClusterError(RuntimeError):
    """The throwaway server could not be made or started; the message says why."""


def find_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    given = os.environ.get(BIN_ENV)
    if given:
        return Path(given)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                    else 0)
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One throwaway server: :meth:`start`, :meth:`create_database`, :meth:`stop`."""

    def __init__(self, bin_dir: Path | None = None, fsync: bool = False,
                 netns: str | None = None, listen: Sequence[str] = ("127.0.0.1",),
                 clients: Sequence[str] = ()) -> None:
        """``netns``: run the server in that network namespace (``ip netns exec``),
        listening on ``listen`` addresses there and trusting the ``clients`` networks
        (CIDR) besides loopback; its Unix socket still reaches it from anywhere on the
        machine (:meth:`socket_dsn`)."""
        found = bin_dir or find_bin()
        if found is None or not (found / "initdb").exists():
            raise ClusterError("PostgreSQL is not installed (no initdb found; set "
                               f"${BIN_ENV} or install Debian's 'postgresql' package)")
        self.bin = found
        self.fsync = fsync
        self.netns = netns
        self.listen = tuple(listen)
        self.clients = tuple(clients)
        self.port = 0
        self.root: Path | None = None
        self._as_user: list[str] = []

    def _run(self, *args: str) -> None:
        try:
            subprocess.run([*self._in_netns, *self._as_user, *args], check=True,
                           capture_output=True, text=True, timeout=120)
        except subprocess.CalledProcessError as exc:
            log = ""
            if self.root is not None and (self.root / "server.log").exists():
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise ClusterError(f"{Path(args[0]).name} failed ({exc.returncode}): "
                               f"{exc.stderr.strip()[-2000:]} {log}") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"{Path(args[0]).name} could not run: {exc}") from exc

    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="taskloom-pg-"))
        if os.geteuid() == 0:
            import pwd

            try:
                account = pwd.getpwnam(_USER)
            except KeyError as exc:
                raise ClusterError(f"running as root, and there is no {_USER!r} account "
                                   "to run the server as") from exc
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", _USER, "--"]
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        if self.clients:
            with open(data / "pg_hba.conf", "a") as hba:
                for network in self.clients:
                    hba.write(f"host all all {network} trust\n")
        self.port = free_port()
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={','.join(self.listen)}"
                   f" -c fsync={'on' if self.fsync else 'off'} -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")

    @property
    def _in_netns(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def dsn(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def socket_dsn(self, database: str = "postgres") -> str:
        """The DSN through the server's Unix socket (in its folder): it reaches a server in
        another network namespace too."""
        return f"postgresql://postgres@/{database}?host={self.root}&port={self.port}"

    def create_database(self, name: str) -> str:
        """A new empty database; its DSN."""
        import psycopg

        with psycopg.connect(self.socket_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.root is None:
            return
        with contextlib.suppress(ClusterError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                      "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


@contextlib.contextmanager
def running_cluster(fsync: bool = False) -> Iterator[Cluster]:
    """A started throwaway server, stopped and removed on exit."""
    cluster = Cluster(fsync=fsync)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class _Shared:
    """One server per process for every test module that asks (counted acquisitions)."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.users = 0
        self.databases = 0


_shared = _Shared()


def acquire_shared() -> Cluster:
    """The process's shared throwaway server, started on first use (:class:`ClusterError`
    when it cannot be); release it with :func:`release_shared`."""
    if _shared.cluster is None:
        cluster = Cluster()
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        _shared.cluster = cluster
    _shared.users += 1
    return _shared.cluster


def release_shared() -> None:
    """Stop and remove the shared server when its last user releases it."""
    _shared.users -= 1
    if _shared.users <= 0 and _shared.cluster is not None:
        _shared.cluster.stop()
        _shared.cluster = None


def new_database(cluster: Cluster, prefix: str = "t") -> str:
    """A fresh empty database on ``cluster`` (unique in this process); its DSN."""
    _shared.databases += 1
    return cluster.create_database(f"{prefix}_{os.getpid()}_{_shared.databases}")


@contextlib.contextmanager
def server_for_tests(acquire: Callable[[], Cluster] = acquire_shared,
                     release: Callable[[], None] = release_shared) -> Iterator[Cluster | None]:
    """The shared server for a pytest fixture: None when PostgreSQL cannot start here and
    ``$CI`` is not set (the tests then skip); under ``$CI`` the failure is raised, so tests
    that need the server fail instead of skipping."""
    try:
        cluster = acquire()
    except (ClusterError, ImportError) as exc:
        if os.environ.get("CI"):
            raise
        import warnings

        warnings.warn(f"PostgreSQL tests skipped: {exc}", stacklevel=2)
        yield None
        return
    try:
        yield cluster
    finally:
        release()
