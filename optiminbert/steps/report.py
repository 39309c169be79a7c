"""Step ``report``: the paper's tables with our numbers (metrics/report.md), and the phases' bars."""

from __future__ import annotations

from optiminbert import report
from optiminbert.paths import METRICS, PLOTS


def make_report() -> str:
    report.write_phase_bars(METRICS, PLOTS / "phases.csv")
    return report.render(METRICS, METRICS / "report.md")
