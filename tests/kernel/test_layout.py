"""The tree reads as the architecture: docs/architecture.md's module table matches the files,
and the kernel stays small."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOTS = (ROOT / "core" / "taskloom", ROOT / "plugins" / "taskloom_std")
KERNEL_LINE_BUDGET = 3500


def _files():
    return {str(p.relative_to(ROOT)) for r in ROOTS for p in r.rglob("*.py")}


def test_architecture_table_lists_every_module_file_for_file():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `((?:core|plugins)/[^`]+\.py)` \|", layout, re.M))
    files = _files()
    assert sorted(files - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - files) == [], "docs/architecture.md lists modules that do not exist"


def test_kernel_is_small():
    lines = sum(len(p.read_text().splitlines()) for p in (ROOTS[0] / "kernel").rglob("*.py"))
    assert lines < KERNEL_LINE_BUDGET, f"kernel has {lines} lines"


def test_no_staging_scripts():
    assert not any((ROOT / "scripts" / n).exists()
                   for n in ("stage-layout", "typecheck", "check-boundary"))
