"""Shared by every test: the plugin authors' kit (its fixtures and markers), opted in."""

import os
import tempfile
from pathlib import Path

pytest_plugins = ["taskloom.testing"]

# The store's signing key (for pickled results) lives outside the user's data folder while
# the suite runs; subprocesses inherit it.
os.environ["TASKLOOM_STORE_KEY"] = str(Path(tempfile.mkdtemp(prefix="taskloom-key-")) / "key")
