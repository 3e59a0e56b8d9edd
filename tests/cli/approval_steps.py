"""The body module of the approval workflows the CLI tests write into a project: prepare a
draft, wait for an approval, publish (each step logs to ran.log beside it)."""

import textwrap

STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def _log(text):
        with open(HERE / "ran.log", "a") as f:
            f.write(text + "\\n")

    def prepare():
        _log("prepare")
        return "draft"

    def publish(prepare, approve):
        _log(f"publish {prepare} {approve['approved']}")
        return "published"
''')
