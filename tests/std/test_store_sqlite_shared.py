"""Several stores on one database in one process, with another process writing: opening a
second store must not drop the first one's locks (or the other process deletes the WAL under
it), and the dashboard's queries see every commit."""

import subprocess
import sys

from taskloom import Engine, Task
from taskloom_std.stores.sqlite import SqliteStore


def test_a_second_store_in_the_process_keeps_the_first_ones_view_current(tmp_path):
    db = tmp_path / "h.db"
    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(db)})
    run_id = engine.run([Task("a", fn=lambda: 1)], name="one").id
    engine.close()
    first = SqliteStore(db)
    second = SqliteStore(db)
    try:
        assert first.run(run_id).status == "completed"
        writer = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute(\"UPDATE runs SET workflow = 'renamed'\"); c.close()"
        )
        subprocess.run([sys.executable, "-c", writer, str(db)], check=True)
        assert (tmp_path / "h.db-wal").exists()  # the writer knew it was not alone
        assert first.run(run_id).workflow == "renamed"
        assert second.runs_page(10, 0, workflow="renamed").total == 1
        assert first.run_version(run_id) is not None and first.run_version("nope") is None
    finally:
        second.close()
        first.close()
