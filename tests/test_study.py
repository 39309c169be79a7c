"""The multitask-methods study (study.py): its variants, its report from trained runs and step
costs, and the step costs measured in fresh processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiminbert import study
from optiminbert.errors import UserError
from optiminbert.losses import STS_LOSSES
from optiminbert.surgery import STRATEGIES


def test_every_method_and_sts_loss_is_a_variant_of_the_default() -> None:
    assert {v["surgery"] for v in study.VARIANTS.values() if "surgery" in v} == set(STRATEGIES) - {"pcgrad"}
    assert {v["sts_loss"] for v in study.VARIANTS.values() if "sts_loss" in v} == set(STS_LOSSES) - {"cosine_similarity"}
    assert all(len(overrides) == 1 for overrides in study.VARIANTS.values())


def _run(directory: Path, epochs: list[tuple[float, float, float]], seed: int = 11711) -> None:
    directory.mkdir(parents=True)
    history = [{"epoch": i + 1, "dev": {"sst": a, "quora": b, "sts": c}, "selection": (a + b + (c + 1) / 2) / 3}
               for i, (a, b, c) in enumerate(epochs)]
    (directory / "run.json").write_text(json.dumps({"settings": {"seed": seed}, "history": history}))


def test_the_report_sets_each_variant_beside_the_default(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(study, "VARIANTS", {"rlw": {"surgery": "rlw"}, "cosent": {"sts_loss": "cosent"}})
    monkeypatch.setattr(study, "PAIRED", ("rlw",))
    monkeypatch.setattr(study, "PAIRED_SEEDS", (1, 2))
    _run(tmp_path / "baseline", [(0.50, 0.80, 0.80)])
    # seed 1: rlw 0.7333 against 0.7233 (+1 point); seed 2: 0.7133 against 0.7233 (-1 point)
    _run(tmp_path / "study/seeds/pcgrad-1/models/mtl_embed", [(0.47, 0.80, 0.80)], seed=1)
    _run(tmp_path / "study/seeds/rlw-1/models/mtl_embed", [(0.50, 0.80, 0.80)], seed=1)
    _run(tmp_path / "study/seeds/pcgrad-2/models/mtl_embed", [(0.47, 0.80, 0.80)], seed=2)
    _run(tmp_path / "study/seeds/rlw-2/models/mtl_embed", [(0.44, 0.80, 0.80)], seed=2)
    _run(tmp_path / "study/rlw/models/mtl_embed", [(0.40, 0.70, 0.70), (0.52, 0.81, 0.81)])  # the kept epoch: 2
    _run(tmp_path / "study/cosent/models/mtl_embed", [(0.49, 0.80, 0.79)])
    costs = {v: {"ms_per_step": ms, "peak_mib": 900.0, "ratio_to_summed": round(ms / 100, 2)}
             for v, ms in {"none": 100.0, "pcgrad": 115.0, "rlw": 101.0, "cosent": 116.0}.items()}
    (tmp_path / "study/timings.json").write_text(json.dumps(costs))

    text = study.write_report(tmp_path / "study", tmp_path / "baseline")
    metrics = json.loads((tmp_path / "study/metrics.json").read_text())
    assert metrics["pcgrad"] == {"sst_acc": 0.5, "para_acc": 0.8, "sts_pearson": 0.8, "overall": 0.7333}
    assert metrics["rlw"]["overall"] == 0.745 and metrics["rlw"]["overall_change"] == 0.0117
    assert metrics["cosent"]["overall_change"] == -0.005
    rows = [line for line in text.split("## Paired seeds")[0].splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == ["| `rlw`", "| `pcgrad`", "| `cosent`"]  # best first
    assert "| 1.01x |" in rows[0] and "| +0.0117 |" in rows[0]
    assert metrics["paired"] == {"rlw": {"seed_11711": 0.0117, "seed_1": 0.01, "seed_2": -0.01,
                                         "mean_change": 0.0039, "standard_error": 0.007}}
    assert "| `rlw` | +1.17 | +1.00 | -1.00 | +0.39 ± 0.70 | no |" in text.splitlines()

    costs.pop("rlw")
    (tmp_path / "study/timings.json").write_text(json.dumps(costs))
    with pytest.raises(UserError, match=r"timings.json: no step cost for rlw; run `dvc repro study/dvc.yaml:timing`$"):
        study.write_report(tmp_path / "study", tmp_path / "baseline")
    (tmp_path / "study/timings.json").write_text("{")
    with pytest.raises(UserError, match=r"timings.json: cannot read the step costs"):
        study.write_report(tmp_path / "study", tmp_path / "baseline")
    with pytest.raises(UserError, match=r"dwa/models/mtl_embed: no trained model here"):
        monkeypatch.setitem(study.VARIANTS, "dwa", {"surgery": "dwa"})
        study.collect(tmp_path / "study", tmp_path / "baseline")


def test_step_costs_time_each_variant_against_the_summed_loss(tiny_prepared, tiny_params, monkeypatch, one_thread) -> None:
    monkeypatch.setattr(study, "VARIANTS", {"rlw": {"surgery": "rlw"}})
    tree = {**tiny_params.record(), "mtl_embed": {"surgery": "pcgrad"}}
    costs = study.step_costs(tree, 2, tiny_prepared)
    assert list(costs) == ["none", "pcgrad", "rlw"]
    assert all(c["ms_per_step"] > 0 and c["peak_mib"] > 0 for c in costs.values())
    assert costs["none"]["ratio_to_summed"] == 1.0
    assert costs["rlw"]["ratio_to_summed"] == round(costs["rlw"]["ms_per_step"] / costs["none"]["ms_per_step"], 2)
