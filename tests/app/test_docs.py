"""The generated references cover every hook and every configuration key, and the site builds."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


def _load_build():
    spec = importlib.util.spec_from_file_location("taskloom_docs_build", ROOT / "docs" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _sections(markdown):
    """Heading text -> the text under it, for every ## and ### heading."""
    parts = re.split(r"^(#{2,3} .+)$", markdown, flags=re.M)
    return {parts[i].lstrip("#").strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _keys_in(section_text):
    return set(re.findall(r"^\| `([^`]+)` \|", section_text, flags=re.M))


def test_hook_reference_is_current():
    committed = (REFERENCE / "hooks.md").read_text(encoding="utf-8")
    assert committed == build.hook_reference(), "run: python docs/build.py"


def test_every_hook_is_documented():
    sections = _sections((REFERENCE / "hooks.md").read_text(encoding="utf-8"))
    specs = build.hook_specs()
    assert specs
    assert "taskloom_circuit_change" in {s.name for s in specs}  # declared by a plugin
    for name in (s.name for s in specs):
        assert name in sections, f"hook {name} is missing from docs/reference/hooks.md"
        assert "When:" in sections[name]


def test_every_schema_key_is_documented():
    sections = _sections((REFERENCE / "config.md").read_text(encoding="utf-8"))
    tables = build.schema_tables()
    assert {"ENGINE_KEYS", "TASK_KEYS", "SCHEDULE_KEYS"} <= set(tables)
    for attr, keys in tables.items():
        title = build._TABLES.get(attr, (f"`{attr}`", ""))[0]
        assert title in sections, f"{attr} has no section in docs/reference/config.md"
        missing = set(keys) - _keys_in(sections[title])
        assert not missing, f"{attr}: keys missing from docs/reference/config.md: {missing}"
        undescribed = [k for k, key in keys.items() if not key.doc.strip()]
        assert not undescribed, f"{attr}: keys without a description: {undescribed}"


def _repository_distributions():
    names = {"taskloom"}
    for pyproject in ROOT.glob("contrib/*/pyproject.toml"):
        match = re.search(r'^name\s*=\s*"([^"]+)"', pyproject.read_text(), flags=re.M)
        if match:
            names.add(match.group(1))
    return names


def test_every_plugin_section_key_is_documented():
    sections = _sections((REFERENCE / "config.md").read_text(encoding="utf-8"))
    ours = _repository_distributions()
    checked = 0
    for section, plugin, dist, keys in build.plugin_sections():
        if dist not in ours and dist is not None:
            continue  # a third-party plugin installed here is not ours to document
        title = f"`[taskloom.{section}]`"
        assert title in sections, f"[taskloom.{section}] (plugin {plugin}) is undocumented"
        missing = set(keys or ()) - _keys_in(sections[title])
        assert not missing, f"[taskloom.{section}]: keys missing from the reference: {missing}"
        checked += 1
    assert checked


def test_guide_and_policy_are_in_the_site():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in ("plugins.md", "hook-policy.md", "reference/hooks.md", "reference/config.md"):
        assert page in nav
        assert (ROOT / "docs" / page).exists()


def test_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plugins" / "index.html").exists()
    assert "taskloom_task_error" in (tmp_path / "reference" / "hooks" / "index.html").read_text()


def test_every_plugin_task_option_is_documented():
    text = (REFERENCE / "config.md").read_text(encoding="utf-8")
    section = text.split("## Task options from plugins", 1)[1].split("\n## ", 1)[0]
    options = build.task_options()
    assert {"retry", "timeout", "cache", "circuit_breaker", "fallback"} <= set(options)
    assert set(options) == _keys_in(section)


def test_executors_imported_lazily_list_their_options_in_the_reference():
    text = (REFERENCE / "config.md").read_text(encoding="utf-8")
    for row in ("| executor `process` | `context` | `None` |",
                "| executor `asyncio` | `sync_workers` | `None` |",
                "| executor `dask` | `n_workers` | `None` |"):
        assert row in text
    assert "see its docs" not in text


def test_lazy_executor_factories_import_nothing_until_used():
    code = ("import sys, taskloom; r = taskloom.load_plugins().registry; "
            "mods = ('taskloom_std.executors.process', 'taskloom_std.executors.asyncio_exec', "
            "'taskloom_dask.executor'); print([m for m in mods if m in sys.modules]); "
            "r.create('executor', 'process', max_workers=1).shutdown(); "
            "print('taskloom_std.executors.process' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
