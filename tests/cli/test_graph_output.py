"""Golden outputs of `taskloom graph` (Mermaid, DOT, text)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from taskloom import Task
from taskloom.app.cli import main
from taskloom.app.cli.graph_cmd import to_dot, to_mermaid, to_text

ETL = Path(__file__).resolve().parents[2] / "examples" / "etl" / "taskloom.toml"

ETL_MERMAID = """\
flowchart TD
    extract_north
    extract_south
    extract_east
    extract_west
    validate
    transform
    aggregate
    report
    flag_rejects{flag_rejects}
    extract_north --> validate
    extract_south --> validate
    extract_east --> validate
    extract_west --> validate
    validate --> transform
    transform --> aggregate
    aggregate --> report
    validate --> report
    validate --> flag_rejects
"""


def sample() -> list[Task]:
    return [
        Task("extract"),
        Task("end"),
        Task("clean up", dependencies=["extract"]),
        Task("notify", dependencies=["clean up", "end"], trigger_rule="all_done"),
    ]


def test_mermaid_golden_for_the_example() -> None:
    result = CliRunner().invoke(main, ["graph", str(ETL)])
    assert result.exit_code == 0, result.output
    assert result.output == ETL_MERMAID


def test_mermaid_quotes_unsafe_names_and_labels_trigger_rules() -> None:
    assert to_mermaid(sample(), conditional={"notify"}) == """\
flowchart TD
    extract
    task2
    task3["clean up"]
    notify{notify}
    extract --> task3
    task3 -->|all_done| notify
    task2 -->|all_done| notify
""".replace("    task2\n", '    task2["end"]\n')


def test_dot_golden() -> None:
    assert to_dot(sample(), conditional={"notify"}, name="demo") == """\
digraph "demo" {
    rankdir=TB;
    node [shape=box];
    "extract";
    "end";
    "clean up";
    "notify" [shape=diamond];
    "extract" -> "clean up";
    "clean up" -> "notify" [label="all_done"];
    "end" -> "notify" [label="all_done"];
}
"""


def test_text_golden_for_the_example() -> None:
    result = CliRunner().invoke(main, ["graph", str(ETL), "--format", "text"])
    assert result.exit_code == 0
    assert result.output.splitlines()[4:] == [
        "validate <- extract_north, extract_south, extract_east, extract_west",
        "transform <- validate",
        "aggregate <- transform",
        "report <- aggregate, validate",
        "flag_rejects <- validate  [conditional]",
    ]
    assert to_text([Task("a"), Task("b", dependencies=["a"], trigger_rule="always")]) == \
        "a\nb <- a  [always]\n"
