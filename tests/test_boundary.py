"""The core never imports taskloom.plugins: checked here directly, and the import-linter
contract that CI runs must list every core module."""

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"


def core_modules():
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield path, ".".join(["taskloom", *parts])


def test_no_core_module_imports_plugins():
    offenders = []
    for path, name in core_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            offenders += [f"{name}: {t}" for t in targets if t.startswith("taskloom.plugins")]
    assert offenders == []


def test_import_linter_contract_covers_every_core_module():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    assert contract["forbidden_modules"] == ["taskloom.plugins"]
    listed = set(contract["source_modules"])
    missing = []
    for _, name in core_modules():
        if name == "taskloom":
            continue
        if not any(name == m or name.startswith(m + ".") for m in listed):
            missing.append(name)
    assert missing == [], f"add to [tool.importlinter] source_modules: {missing}"
