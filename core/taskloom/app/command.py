"""The ``taskloom`` executable. ``taskloom --version`` answers without loading click (most of
what that command costs); every other command line goes to the click group
(:func:`taskloom.app.cli.main`)."""

from __future__ import annotations

import sys

from taskloom._version import __version__


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        # click.version_option's message, word for word (tests/cli holds the two equal)
        print(f"taskloom, version {__version__}")
        return
    from taskloom.app.cli import main as group

    group()
