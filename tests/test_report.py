"""The report (report.py): the paper's tables with our numbers beside the published ones, from
whatever metrics files exist, and the per-phase bars. (A phase added to the registry reaching
Table 2: test_phases.py.)"""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from optiminbert import report

BASELINE = {"sst": {"pretrain": {"dev_acc": 0.3}, "finetune": {"dev_acc": 0.5}},
            "cfimdb": {"pretrain": {"dev_acc": 0.7}, "finetune": {"dev_acc": 0.9}}}


def dev(sst: float, para: float, sts: float, overall: float) -> dict:
    return {"sst_acc": sst, "para_acc": para, "sts_pearson": sts, "overall": overall}


def write_metrics(directory: Path, **files: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / f"{name}.json").write_text(json.dumps(content))
    return directory


def tables(metrics_dir: Path) -> dict[str, list[list[str]]]:
    return {title: rows for title, _, rows in report.build_tables(metrics_dir)}


def test_the_full_report_sets_ours_beside_the_papers_numbers(tmp_path):
    metrics = write_metrics(
        tmp_path, baseline=BASELINE,
        mtl={"dev": dev(0.5, 0.7, 0.3, 0.6)}, mtl_embed={"dev": dev(0.51, 0.8, 0.8, 0.7)},
        specialist={"dev": dev(0.52, 0.83, 0.88, 0.76)},
        ensemble={"dev": dev(0.53, 0.84, 0.87, 0.77), "members": ["mtl", "specialist"]},
    )
    found = tables(metrics)
    assert found["Table 1: baseline dev accuracy"] == [
        ["SST", "pretrain", "0.390", "0.300"], ["SST", "finetune", "0.515", "0.500"],
        ["CFIMDB", "pretrain", "0.780", "0.700"], ["CFIMDB", "finetune", "0.966", "0.900"],
    ]
    table2 = found["Table 2: dev results per phase"]
    # the paper's overall recomputed in the leaderboard form: (0.520 + 0.475 + (-0.005 + 1) / 2) / 3
    assert table2[0] == ["Round-robin MTL", "paper", "0.520", "0.475", "-0.005", f"{(0.520 + 0.475 + 0.4975) / 3:.3f}"]
    assert table2[1] == ["Round-robin MTL", "ours", "0.500", "0.700", "0.300", "0.600"]
    assert [row[:2] for row in table2] == [[t, s] for t in ("Round-robin MTL", "MTL + sentence embeddings", "Specialists")
                                           for s in ("paper", "ours")] + [[f"{report.ENSEMBLE_TITLE}: mean of mtl, specialist", "ours"]]
    assert [row[0] for row in found["Table 3: test predictions (predictions/<phase>/<task>-test.csv)"]] == [
        "Round-robin MTL", "MTL + sentence embeddings", "Specialists",
    ]
    console = Console(file=io.StringIO(), width=200)
    text = report.render(metrics, tmp_path / "report.md", console=console)
    assert (tmp_path / "report.md").read_text() == text
    assert "## Table 1: baseline dev accuracy" in text and "| Specialists | ours | 0.520 | 0.830 | 0.880 | 0.760 |" in text
    assert "Table 2" in console.file.getvalue()


def test_without_metrics_only_the_papers_numbers_are_shown(tmp_path):
    found = tables(write_metrics(tmp_path / "metrics"))
    assert list(found) == ["Table 2: dev results per phase"]
    assert {row[1] for row in found["Table 2: dev results per phase"]} == {"paper"}


def test_phase_bars_list_the_phases_with_metrics_then_the_ensemble(tmp_path):
    metrics = write_metrics(tmp_path, specialist={"dev": dev(0.52, 0.83, 0.88, 0.76)}, mtl={"dev": dev(0.5, 0.7, 0.3, 0.6)},
                            ensemble={"dev": dev(0.53, 0.84, 0.87, 0.77), "members": ["mtl", "specialist"]})
    report.write_phase_bars(metrics, tmp_path / "phases.csv")
    assert (tmp_path / "phases.csv").read_text().splitlines() == [
        "phase,sst_acc,para_acc,sts_pearson,overall",
        "mtl,0.5,0.7,0.3,0.6",
        "specialist,0.52,0.83,0.88,0.76",
        "ensemble,0.53,0.84,0.87,0.77",
    ]
