"""The dashboard's actions that run taskloom: ``taskloom resume`` and ``taskloom run`` as
child processes, each with its output in a log file beside the database."""

from __future__ import annotations

import getpass
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

_ENTRY = "import sys; from taskloom.app.cli import main; sys.argv[0] = 'taskloom'; main()"


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def requested_by(client: str | None) -> str:
    """Who asked, as recorded with an action: the dashboard's client and the account
    serving the dashboard."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"taskloom ui (client {client or 'unknown'}; served by {user}@{socket.gethostname()})"


class Launcher:
    """Starts taskloom commands in the background; each child is waited for by a thread so
    none is left a zombie."""

    def __init__(self, db: Path | str) -> None:
        self.db = db
        # Beside a database file; for a database server, in the configuration's folder.
        self.log_dir: Path | None = db.parent / "ui-actions" if isinstance(db, Path) else None

    def command(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", _ENTRY, *args]

    def spawn(self, args: Sequence[str], name: str, cwd: Path | None = None) -> tuple[int, Path]:
        """Start ``taskloom ARGS``; returns its pid and the file its output goes to."""
        log_dir = self.log_dir or (cwd or Path.cwd()) / ".taskloom" / "ui-actions"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self.command(args), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True,
            )
        threading.Thread(target=proc.wait, name=f"taskloom-ui-{name}", daemon=True).start()
        return proc.pid, log

    def resume(self, run_id: str, config: Path, tag: str, *,
               retry_failed: bool = True) -> tuple[int, Path]:
        """``taskloom resume RUN CONFIG`` on this database, ``--retry-failed`` unless a
        waiting run is only continued (its signal arrived)."""
        args = ["resume", run_id, str(config), "--db", str(self.db)]
        name = f"retry-{run_id}-{tag}"
        if retry_failed:
            args.append("--retry-failed")
        else:
            name = f"continue-{run_id}-{tag}"
        return self.spawn(args, name, cwd=config.parent)

    def start(self, config: Path, overrides: Sequence[str], tag: str) -> tuple[int, Path]:
        """``taskloom run CONFIG`` recording into this database, with ``--set`` overrides."""
        if isinstance(self.db, Path):
            args = ["run", str(config), "--store", "sqlite",
                    "--set", f"taskloom.store_options.path={toml_string(str(self.db))}"]
        else:  # a database server: its history component says which store and options
            from taskloom.app.cli._common import history_provider
            from taskloom.kernel.pluginmanager import load_plugins

            provider = history_provider(load_plugins(), db=self.db)
            if provider is None:
                raise RuntimeError(f"no loaded plugin keeps a run history at {self.db}")
            options = provider.record_options({}, config.parent, None, self.db)
            args = ["run", str(config), "--store", provider.store]
            for key, value in options.items():
                args += ["--set", f"taskloom.store_options.{key}={toml_string(str(value))}"]
        for item in overrides:
            args += ["--set", item]
        return self.spawn(args, f"start-{tag}", cwd=config.parent)
