"""The report: the paper's tables with our committed numbers beside the published ones."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from optiminbert.atomic import write_csv_atomic, write_text_atomic
from optiminbert.metrics import overall
from optiminbert.phases import PHASES, STUDY_PHASES
from optiminbert.phases.baseline import HANDOUT, MODES

ENSEMBLE_TITLE = "Ensemble of the phases (ours only)"


def _load(metrics_dir: Path, name: str) -> dict | None:
    path = metrics_dir / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _ours_row(title: str, dev: dict) -> list[str]:
    return [title, "ours", *(f"{dev[k]:.3f}" for k in ("sst_acc", "para_acc", "sts_pearson", "overall"))]


def build_tables(metrics_dir: Path) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = []
    baseline = _load(metrics_dir, "baseline")
    if baseline:
        rows = [
            [task.upper(), mode, f"{HANDOUT[task][mode]:.3f}", f"{baseline[task][mode]['dev_acc']:.3f}"]
            for task in HANDOUT
            for mode in MODES
        ]
        tables.append(("Table 1: baseline dev accuracy", ["task", "mode", "handout (bert-base)", "ours"], rows))
    rows = []
    for name in STUDY_PHASES:
        phase, ours = PHASES[name], _load(metrics_dir, name)
        if phase.paper:
            rows.append([phase.title, "paper", *(f"{x:.3f}" for x in phase.paper), f"{overall(*phase.paper):.3f}"])
        if ours:
            rows.append(_ours_row(phase.title, ours["dev"]))
    ensemble = _load(metrics_dir, "ensemble")
    if ensemble:
        rows.append(_ours_row(f"{ENSEMBLE_TITLE}: mean of {', '.join(ensemble['members'])}", ensemble["dev"]))
    tables.append(("Table 2: dev results per phase", ["phase", "source", "SST acc", "para acc", "STS r", "overall"], rows))
    test_rows = [
        [PHASES[name].title, "written", "written", "written", "labels withheld"]
        for name in STUDY_PHASES
        if _load(metrics_dir, name)
    ]
    if test_rows:
        tables.append(("Table 3: test predictions (predictions/<phase>/<task>-test.csv)", ["phase", "SST", "para", "STS", "scores"], test_rows))
    return tables


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render(metrics_dir: str | Path, out: str | Path | None = None, console: Console | None = None) -> str:
    metrics_dir = Path(metrics_dir)
    tables = build_tables(metrics_dir)
    parts = [
        "# OptiMinBERT results",
        "",
        "Overall = (SST acc + paraphrase acc + (STS r + 1) / 2) / 3, the CS224N leaderboard form, "
        "for the paper's numbers too (the report mixes it with a plain mean).",
        "",
    ]
    for title, header, rows in tables:
        parts += [f"## {title}", "", *markdown_table(header, rows), ""]
    text = "\n".join(parts)
    if out is not None:
        write_text_atomic(text, out)
    console = console or Console()
    for title, header, rows in tables:
        table = Table(title=title)
        for h in header:
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        console.print(table)
    return text


def write_phase_bars(metrics_dir: str | Path, path: str | Path) -> None:
    """One row per phase with its dev scores: the bar chart of the phases per task."""
    rows = []
    for phase in (*STUDY_PHASES, "ensemble"):
        ours = _load(Path(metrics_dir), phase)
        if ours:
            d = ours["dev"]
            rows.append([phase, d["sst_acc"], d["para_acc"], d["sts_pearson"], d["overall"]])
    write_csv_atomic(["phase", "sst_acc", "para_acc", "sts_pearson", "overall"], rows, path)
