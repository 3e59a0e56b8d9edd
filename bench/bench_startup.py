"""Start-up on a wheel install: ``import taskloom`` and ``taskloom --version`` as whole processes.

The wheel is built from this checkout and installed (with its dependencies) into a
temporary virtual environment, as a user gets it: an editable install adds an import hook to
every start. The processes run there, interleaved with ``python -c pass`` of the same
interpreter in rotating order, and ``import taskloom`` from this (editable) environment for
context. Whole-process wall time, milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, Stat, interleaved, per_round

ROOT = Path(__file__).resolve().parents[1]


def _quiet(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{what} failed:\n{done.stdout}\n{done.stderr}")


def wheel_env(tmp: Path) -> Path:
    """Build taskloom's wheel and install it into a fresh venv under ``tmp``; its bin dir."""
    dist, env = tmp / "dist", tmp / "venv"
    _quiet([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
           "building the wheel")
    _quiet([sys.executable, "-m", "venv", "--without-pip", str(env)], "creating the venv")
    py = env / "bin" / "python"
    wheels = sorted(dist.glob("taskloom-*.whl"))
    _quiet([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
            *map(str, wheels)], "installing the wheel")
    where = subprocess.run([str(py), "-c", "import taskloom; print(taskloom.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp).stdout
    if "site-packages" not in where:
        raise RuntimeError(f"taskloom in the wheel venv does not come from the wheel: {where}")
    return py.parent


def _process(args: list[str], cwd: Path) -> None:
    subprocess.run(args, check=True, capture_output=True, cwd=cwd)


def rows(quick: bool) -> list[Row]:
    rounds = 7 if quick else 21
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        bin_dir = wheel_env(tmp)
        setup = time.perf_counter() - t0
        py = str(bin_dir / "python")
        sides = {
            "bare": [py, "-c", "pass"],
            "import": [py, "-c", "import taskloom"],
            "version": [str(bin_dir / "taskloom"), "--version"],
            "editable": [sys.executable, "-c", "import taskloom"],
        }
        times = interleaved({k: (lambda a=a: _process(a, tmp)) for k, a in sides.items()},
                            rounds)
    ms = {k: [s * 1e3 for s in v] for k, v in times.items()}
    bare = Stat.of(ms["bare"])

    def extra(side: str) -> str:
        over = Stat.of([a - b for a, b in zip(ms[side], ms["bare"], strict=True)])
        return f"{over.fmt(1)} ms over a bare interpreter, same rounds"

    return [
        Row("python -c 'import taskloom' (wheel install)", "ms", Stat.of(ms["import"]), bare,
            "python -c pass", higher_is_better=False,
            ratios=per_round(ms["import"], ms["bare"]), target="< 40 ms", max_value=40,
            note=f"{extra('import')}; wheel built and installed in {setup:.0f} s"),
        Row("taskloom --version (wheel install)", "ms", Stat.of(ms["version"]), bare,
            "python -c pass", higher_is_better=False,
            ratios=per_round(ms["version"], ms["bare"]), note=extra("version")),
        Row("python -c 'import taskloom' (editable install, for comparison)", "ms",
            Stat.of(ms["editable"]), Stat.of(ms["import"]), "wheel install",
            higher_is_better=False, ratios=per_round(ms["editable"], ms["import"]),
            note=extra("editable")),
    ]


if __name__ == "__main__":
    for row in rows("--quick" in sys.argv):
        print(f"{row.workload}: {row.taskloom.fmt(1)} ms vs {row.baseline_name} "
              f"{row.baseline.fmt(1) if row.baseline else '-'} ({row.ratio_text()}) "
              f"{row.status()}; {row.note}")
