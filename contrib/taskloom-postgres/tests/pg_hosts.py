"""Several "hosts" on this machine for the many-hosts tests: network namespaces made with
``ip netns``, each joined to the database's namespace by a veth pair, and each process run in
a UTS namespace of its own so that it has its own host name (claims then tell hosts apart by
name, as on real machines, and a dead host's claims can only be taken over by lease).

Only namespaces made here are touched, every interface is created inside them (never in the
host's own namespace), and :meth:`Hosts.close` deletes them all. Where namespaces cannot be
made (not root, no ``ip``), :func:`make_hosts` says why and the test uses loopback processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from taskloom_postgres.cluster import Cluster


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Hosts:
    """The database's namespace and ``count`` host namespaces, host ``i`` on 10.N.i.2 with
    the database at 10.N.i.1 (``N`` from this process's id, so parallel runs differ)."""

    def __init__(self, count: int) -> None:
        tag = f"tl{os.getpid()}"
        self.db_ns = f"{tag}db"
        self.names = [f"{tag}h{i}" for i in range(1, count + 1)]
        self.net = 16 + os.getpid() % 200
        self.made: list[str] = []

    def db_address(self, host: int) -> str:
        return f"10.{self.net}.{host}.1"

    def setup(self) -> None:
        _ip("netns", "add", self.db_ns)
        self.made.append(self.db_ns)
        _ip("-n", self.db_ns, "link", "set", "lo", "up")
        for i, name in enumerate(self.names, start=1):
            _ip("netns", "add", name)
            self.made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
            # Both ends made inside the namespaces: nothing appears in the host's own.
            _ip("-n", self.db_ns, "link", "add", f"vd{i}", "type", "veth", "peer", "name",
                f"vh{i}", "netns", name)
            _ip("-n", self.db_ns, "addr", "add", f"{self.db_address(i)}/24", "dev", f"vd{i}")
            _ip("-n", name, "addr", "add", f"10.{self.net}.{i}.2/24", "dev", f"vh{i}")
            _ip("-n", self.db_ns, "link", "set", f"vd{i}", "up")
            _ip("-n", name, "link", "set", f"vh{i}", "up")

    def cluster(self) -> Cluster:
        return Cluster(netns=self.db_ns,
                       listen=["127.0.0.1", *(self.db_address(i)
                                              for i in range(1, len(self.names) + 1))],
                       clients=[f"10.{self.net}.0.0/16"])

    def command(self, host: int, args: Sequence[str]) -> list[str]:
        """``args`` run on host ``host`` (1-based), named ``host<host>``."""
        name = self.names[host - 1]
        return ["ip", "netns", "exec", name, "unshare", "--uts", "sh", "-c",
                f'hostname host{host} && exec "$@"', "sh", *args]

    def dsn(self, cluster: Cluster, host: int, database: str) -> str:
        """The database as host ``host`` reaches it: over its veth pair."""
        return cluster.dsn(database, host=self.db_address(host))

    def close(self) -> None:
        for name in reversed(self.made):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _ip("netns", "del", name)
        self.made.clear()


class Loopback:
    """The fallback: every "host" is a plain process on this machine, over loopback."""

    names: list[str]

    def __init__(self, count: int) -> None:
        self.names = [f"host{i}" for i in range(1, count + 1)]

    def cluster(self) -> Cluster:
        return Cluster()

    def command(self, host: int, args: Sequence[str]) -> list[str]:
        return list(args)

    def dsn(self, cluster: Cluster, host: int, database: str) -> str:
        return cluster.dsn(database)

    def close(self) -> None:
        """Nothing was made."""


def make_hosts(count: int) -> tuple[Hosts | Loopback, str | None]:
    """Namespaced hosts when they can be made here, else loopback processes and why not."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        return Loopback(count), "network namespaces need root, ip and unshare"
    hosts = Hosts(count)
    try:
        hosts.setup()
    except (subprocess.SubprocessError, OSError) as exc:
        hosts.close()
        detail = getattr(exc, "stderr", "") or exc
        return Loopback(count), f"ip netns failed: {detail}"
    return hosts, None


def read_lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]
