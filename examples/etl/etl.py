"""The steps of the ETL example: regional sales CSV files in, a Markdown report out.

Each function is a task body named in ``taskloom.toml``. Bodies receive their dependencies'
results by parameter name, and ``context`` (the attempt's context: ``context.config`` is
the task's ``config`` table, ``context.results`` every completed task's result).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLUMNS = ("date", "region", "product", "units", "unit_price")


def extract(context: Any) -> list[dict[str, str]]:
    """Read one region's CSV file (``config.file``, relative to this folder)."""
    path = HERE / context.config["file"]
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path.name}: expected columns {COLUMNS}, got {reader.fieldnames}")
        return list(reader)


def validate(context: Any) -> dict[str, Any]:
    """Merge the extracted rows; keep well-formed ones, count the rest."""
    rows: list[dict[str, Any]] = []
    rejected: list[str] = []
    for dep in context.task.dependencies:
        for n, row in enumerate(context.results[dep], start=2):
            try:
                units = int(row["units"])
                price = float(row["unit_price"])
                if units < 0 or price <= 0:
                    raise ValueError("negative units or price")
            except (TypeError, ValueError) as exc:
                rejected.append(f"{dep} line {n}: {exc}")
                continue
            rows.append({**row, "units": units, "unit_price": price})
    if not rows:
        raise ValueError("no valid rows in any input file")
    return {"rows": rows, "rejected": rejected}


def transform(validate: dict[str, Any]) -> list[dict[str, Any]]:
    """Add each row's revenue and ISO week."""
    import datetime as dt

    out = []
    for row in validate["rows"]:
        day = dt.date.fromisoformat(row["date"])
        out.append({**row, "revenue": round(row["units"] * row["unit_price"], 2),
                    "week": f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}"})
    return out


def aggregate(transform: list[dict[str, Any]]) -> dict[str, Any]:
    """Revenue and units by region, by product, and by week."""
    by_region: dict[str, float] = defaultdict(float)
    by_product: dict[str, int] = defaultdict(int)
    by_week: dict[str, float] = defaultdict(float)
    for row in transform:
        by_region[row["region"]] += row["revenue"]
        by_product[row["product"]] += row["units"]
        by_week[row["week"]] += row["revenue"]
    return {
        "rows": len(transform),
        "revenue": round(sum(by_region.values()), 2),
        "by_region": {k: round(v, 2) for k, v in sorted(by_region.items())},
        "units_by_product": dict(sorted(by_product.items())),
        "by_week": {k: round(v, 2) for k, v in sorted(by_week.items())},
    }


def report(aggregate: dict[str, Any], validate: dict[str, Any], context: Any) -> str:
    """Write the Markdown report (``config.output``, relative to this folder)."""
    out = Path(context.config.get("output", "out/report.md"))
    path = out if out.is_absolute() else HERE / out
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Sales report",
        "",
        f"{aggregate['rows']} rows, total revenue {aggregate['revenue']:,.2f}; "
        f"{len(validate['rejected'])} rows rejected.",
        "",
        "| region | revenue |",
        "|---|---:|",
        *(f"| {r} | {v:,.2f} |" for r, v in aggregate["by_region"].items()),
        "",
        "| product | units |",
        "|---|---:|",
        *(f"| {p} | {u} |" for p, u in aggregate["units_by_product"].items()),
        "",
        "| week | revenue |",
        "|---|---:|",
        *(f"| {w} | {v:,.2f} |" for w, v in aggregate["by_week"].items()),
    ]
    if validate["rejected"]:
        lines += ["", "Rejected rows:", "", *(f"- {r}" for r in validate["rejected"])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"report written to {path}")
    return str(path)


def has_rejects(context: Any) -> bool:
    """``when`` predicate: only flag data quality when rows were rejected. It receives the
    same context object as a body, before the task's first attempt."""
    return bool(context.results["validate"]["rejected"])


def flag_rejects(validate: dict[str, Any]) -> int:
    """A conditional step: report the rejected rows on stderr."""
    import sys

    for line in validate["rejected"]:
        print(f"rejected: {line}", file=sys.stderr)
    return len(validate["rejected"])
