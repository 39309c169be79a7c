"""The multitask-methods study (optiminbert/study/): its params file, its report from trained runs
and step costs, and the step costs measured in fresh processes in alternating orders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from optiminbert import study
from optiminbert.errors import UserError
from optiminbert.losses import STS_LOSSES
from optiminbert.prepared import TaskSplit, read_manifest, short_dev_copy, split_path
from optiminbert.study import report, timing
from optiminbert.surgery import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]


def test_the_study_varies_the_default_by_every_method_and_sts_loss() -> None:
    declared = study.load(ROOT / study.PARAMS)
    assert {v["surgery"] for v in declared.variants.values() if "surgery" in v} == set(STRATEGIES) - {"pcgrad"}
    assert {v["sts_loss"] for v in declared.variants.values() if "sts_loss" in v} == set(STS_LOSSES) - {"cosine_similarity"}
    assert set(declared.paired) <= set(declared.variants) and declared.seeds


def _params(tmp_path: Path, **changes) -> Path:
    raw = {"variants": {"rlw": {"surgery": "rlw"}, "cosent": {"sts_loss": "cosent"}}, "paired": ["rlw"],
           "seeds": [1, 2], "timing": {"rounds": 2, "steps": 3}, **changes}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"variants": {"rlw": {"surgery": "nope"}}}, "variant rlw: unknown surgery 'nope'"),
    ({"variants": {"rlw": {"lr": "fast"}}}, "variant rlw: param lr must be a number"),
    ({"variants": {"rlw": {"pooling": "mean"}}}, "variant rlw: mtl_embed does not read pooling"),
    ({"variants": {"rlw": {"speed": 2}}}, "variant rlw: unknown setting speed"),
    ({"variants": {"Bad Name": {"surgery": "rlw"}}}, "variant Bad Name: a name is lower-case"),
    ({"variants": {"default": {"surgery": "rlw"}}}, "variant default: a name is lower-case"),
    ({"paired": ["dwa"]}, "paired must list variants, each once; known: rlw, cosent"),
    ({"seeds": [1, 1]}, "seeds must list whole numbers, each once"),
    ({"seeds": []}, "paired variants need seeds"),
    ({"timing": {"rounds": 0, "steps": 3}}, "timing must set rounds and steps, each a whole number from 1"),
    ({"budget": 3}, "unknown key budget"),
])
def test_a_bad_study_params_file_is_refused_in_one_line(tmp_path, changes, message) -> None:
    with pytest.raises(UserError, match=message) as caught:
        study.load(_params(tmp_path, **changes))
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(tmp_path / "params.yaml"))


def test_the_study_params_are_read_as_dvc_exp_run_writes_them(tmp_path) -> None:
    # `dvc exp run -S` writes 1e-05 without a dot: a number, not a string
    path = _params(tmp_path)
    path.write_text(path.read_text().replace("surgery: rlw", "surgery: rlw\n    lr: 1e-05"))
    assert study.load(path).variants["rlw"] == {"surgery": "rlw", "lr": 1e-05}


def _run(directory: Path, epochs: list[tuple[float, float, float]], seed: int = 11711) -> None:
    directory.mkdir(parents=True)
    history = [{"epoch": i + 1, "dev": {"sst": a, "quora": b, "sts": c}, "selection": (a + b + (c + 1) / 2) / 3}
               for i, (a, b, c) in enumerate(epochs)]
    record = {"tasks": ["sst", "quora", "sts"], "pairs": "siamese", "settings": {"seed": seed}, "history": history}
    (directory / "run.json").write_text(json.dumps(record))


def _cost(ms: float) -> dict:
    return {"ms_per_step": ms, "ratio_to_summed": round(ms / 100, 2), "ratio_range": [round(ms / 100, 2) - 0.02, round(ms / 100, 2) + 0.03],
            "peak_mib": 900.0, "rounds": 2}


def test_the_report_sets_each_variant_beside_the_default(tmp_path) -> None:
    declared = study.load(_params(tmp_path))
    out = tmp_path / "study"
    _run(tmp_path / "baseline", [(0.50, 0.80, 0.80)])
    # seed 1: rlw 0.7333 against 0.7233 (+1 point); seed 2: 0.7133 against 0.7233 (-1 point)
    _run(out / "seeds/default-1/models/mtl_embed", [(0.47, 0.80, 0.80)], seed=1)
    _run(out / "seeds/rlw-1/models/mtl_embed", [(0.50, 0.80, 0.80)], seed=1)
    _run(out / "seeds/default-2/models/mtl_embed", [(0.47, 0.80, 0.80)], seed=2)
    _run(out / "seeds/rlw-2/models/mtl_embed", [(0.44, 0.80, 0.80)], seed=2)
    _run(out / "runs/rlw/models/mtl_embed", [(0.40, 0.70, 0.70), (0.52, 0.81, 0.81)])  # the kept epoch: 2
    _run(out / "runs/cosent/models/mtl_embed", [(0.49, 0.80, 0.79)])
    costs = {v: _cost(ms) for v, ms in {"none": 100.0, "default": 115.0, "rlw": 101.0, "cosent": 116.0}.items()}
    (out / "timings.json").write_text(json.dumps(costs))

    text = report.write_report(declared, out, tmp_path / "baseline")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["default"] == {"sst_acc": 0.5, "para_acc": 0.8, "sts_pearson": 0.8, "overall": 0.7333}
    assert metrics["rlw"]["overall"] == 0.745 and metrics["rlw"]["overall_change"] == 0.0117
    assert metrics["cosent"]["overall_change"] == -0.005
    rows = [line for line in text.split("## Paired seeds")[0].splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == ["| `rlw`", "| `default`", "| `cosent`"]  # best first
    assert "| loss weighting rlw |" in rows[0] and "| STS loss cosent |" in rows[2]
    assert "| 1.01x (0.99–1.04) |" in rows[0] and "| +0.0117 |" in rows[0]
    assert metrics["paired"] == {"rlw": {"seed_11711": 0.0117, "seed_1": 0.01, "seed_2": -0.01,
                                         "mean_change": 0.0039, "standard_error": 0.007}}
    assert "| `rlw` | +1.17 | +1.00 | -1.00 | +0.39 ± 0.70 | no |" in text.splitlines()

    costs.pop("rlw")
    (out / "timings.json").write_text(json.dumps(costs))
    with pytest.raises(UserError, match=r"timings.json: no step cost for rlw; run `dvc repro study/dvc.yaml:timing`$"):
        report.write_report(declared, out, tmp_path / "baseline")
    (out / "timings.json").write_text("{")
    with pytest.raises(UserError, match=r"timings.json: cannot read the step costs"):
        report.write_report(declared, out, tmp_path / "baseline")
    with pytest.raises(UserError, match=r"runs/dwa/models/mtl_embed: no trained model here"):
        report.collect(study.load(_params(tmp_path, variants={"dwa": {"surgery": "dwa"}}, paired=[])), out, tmp_path / "baseline")
    with pytest.raises(UserError, match=r"seeds lists 11711, the default run's own seed"):
        report.collect_paired(study.load(_params(tmp_path, seeds=[11711])), out, tmp_path / "baseline", {})


def test_a_short_dev_copy_cuts_dev_and_links_the_rest(tiny_prepared, tmp_path) -> None:
    short_dev_copy(tiny_prepared, tmp_path, 3)
    for task in ("sst", "quora", "sts"):
        full, cut = (TaskSplit.load(split_path(d, task, "dev")) for d in (tiny_prepared, tmp_path))
        assert cut.ids == full.ids[:3] and cut.texts == full.texts[:3] and cut.labels.tolist() == full.labels[:3].tolist()
        assert [cut.columns[c][i] for c in range(len(cut.columns)) for i in range(3)] == \
            [full.columns[c][i] for c in range(len(full.columns)) for i in range(3)]
        assert len(TaskSplit.load(split_path(tmp_path, task, "train"))) == len(TaskSplit.load(split_path(tiny_prepared, task, "train")))
    assert read_manifest(tmp_path)["tokenizer"] == read_manifest(tiny_prepared)["tokenizer"]


def test_step_costs_time_each_variant_against_the_summed_loss_in_alternating_orders(
        tiny_prepared, tiny_params, one_thread, tmp_path, capsys) -> None:
    declared = study.load(_params(tmp_path, variants={"rlw": {"surgery": "rlw"}}))
    tree = {**tiny_params.record(), "mtl_embed": {"surgery": "pcgrad"}}
    costs = timing.step_costs(tree, declared, tiny_prepared)
    assert list(costs) == ["none", "default", "rlw"]
    order = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("round ")]
    assert order == ["round 1/2 none", "round 1/2 default", "round 1/2 rlw", "round 2/2 rlw", "round 2/2 default", "round 2/2 none"]
    assert all(c["ms_per_step"] > 0 and c["peak_mib"] > 0 and c["rounds"] == 2 for c in costs.values())
    assert costs["none"]["ratio_to_summed"] == 1.0 and costs["none"]["ratio_range"] == [1.0, 1.0]
    low, high = costs["rlw"]["ratio_range"]
    assert low <= costs["rlw"]["ratio_to_summed"] <= high
    assert timing.read_costs(_write(tmp_path / "timings.json", costs), ["none", "rlw"]) == costs


def _write(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path
