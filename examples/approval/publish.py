"""The bodies of the approval example: list the drafts, check each, publish when approved."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def list_drafts(folder: str) -> list[str]:
    """The Markdown files of ``folder`` (relative to this example), sorted."""
    return sorted(str(p.relative_to(HERE)) for p in (HERE / folder).glob("*.md"))


def check(path: str, context: Any) -> dict[str, Any]:
    """One draft's word count, and whether it fits ``max_words``."""
    words = len((HERE / path).read_text(encoding="utf-8").split())
    return {"path": path, "words": words, "fits": words <= context.params["max_words"]}


def publish(check: list[dict[str, Any]], approve: dict[str, Any]) -> str:
    """Copy every draft that fits to out/, when the approval says so."""
    if not approve["approved"]:
        return f"not published: {approve.get('by', 'the reviewer')} did not approve"
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    published = [c["path"] for c in check if c["fits"]]
    for path in published:
        shutil.copy(HERE / path, out / Path(path).name)
    return f"published {len(published)} of {len(check)} drafts (approved by " \
           f"{approve.get('by', 'someone')})"
