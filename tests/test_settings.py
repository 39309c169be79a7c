"""settings.py: the embedded defaults and params.yaml, the checks a params file meets, how a run's
settings resolve (top level < sections in order < overrides), ``--set`` parsing, what a run
records, and what a DVC training stage must list."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from optiminbert import phases, settings
from optiminbert.errors import UserError
from optiminbert.schema import RunShape
from optiminbert.settings import SCHEMA, STEPS, Settings, resolve

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def leaves(tree: dict, prefix: str = "") -> dict:
    """Every value of a params tree by its dotted key; an empty section has none, so it drops out."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def first_difference(given: dict, embedded: dict) -> str | None:
    """The first dotted key where a params file and the embedded defaults differ, in the file's
    order, then the defaults' keys it lacks. Types count: ``compile: 0`` equals False in Python,
    and ``grad_clip: 1`` is an int where the schema holds a float."""
    a, b = leaves(given), leaves(embedded)
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in b:
            return f"{key}: in params.yaml ({a[key]!r}), not in the embedded defaults"
        if key not in a:
            return f"{key}: in the embedded defaults ({b[key]!r}), not in params.yaml"
        if (type(a[key]), a[key]) != (type(b[key]), b[key]):
            return f"{key}: params.yaml has {a[key]!r}, the embedded defaults {b[key]!r}"
    return None


def read_yaml(text: str) -> dict:
    # settings' own YAML reading (its loader reads 2e-05 as a float, as load() does)
    return settings.parse_value(text)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(phase: str, task: str | None = None, mode: str | None = None) -> phases.Run:
    (only,) = phases.get(phase).select(task, mode)
    return only


def run_settings(tree: dict, r: phases.Run, overrides: dict | None = None) -> Settings:
    # what steps.train.run_settings does, without importing the training code
    return resolve(tree, r.sections, overrides, r.shape)


# -- params.yaml and the embedded defaults -------------------------------------------------------


def test_params_yaml_is_the_embedded_defaults_key_by_key():
    # A run outside the project (no params.yaml) must train the study's model.
    difference = first_difference(read_yaml(PARAMS.read_text(encoding="utf-8")), settings.defaults())
    assert difference is None, difference
    assert settings.load(PARAMS) == settings.defaults()


@pytest.mark.parametrize(
    "old, new, named",
    [
        ("lr: 1.0e-4", "lr: 2.0e-4", "lr: params.yaml has 0.0002, the embedded defaults 0.0001"),
        ("    head_lr: 3.0e-3", "    head_lr: 3.0e-4", "specialist.quora.head_lr: params.yaml has 0.0003"),
        ("grad_clip: 1.0", "grad_clip: 1", "grad_clip: params.yaml has 1, the embedded defaults 1.0"),
        ("compile: false", "compile: 0", "compile: params.yaml has 0, the embedded defaults False"),
        ("  cfimdb:\n    batch_size: 8\n", "  cfimdb: {}\n", "baseline.cfimdb.batch_size: in the embedded defaults (8), not in params.yaml"),
        ("evaluate: {}", "evaluate:\n  eval_batch_size: 64", "evaluate.eval_batch_size: in params.yaml (64), not in the embedded defaults"),
        ("  members: [mtl, mtl_embed, specialist]", "  members: [mtl, specialist]", "ensemble.members: params.yaml has ['mtl', 'specialist']"),
    ],
)
def test_a_params_yaml_copy_with_one_default_changed_is_named(old, new, named):
    # The comparison above, shown to fail on a copy of the real file with one value changed.
    text = PARAMS.read_text(encoding="utf-8")
    assert text.count(old) == 1
    found = first_difference(read_yaml(text.replace(old, new)), settings.defaults())
    assert found is not None and found.startswith(named), found


def test_empty_sections_count_as_absent():
    assert first_difference({"lr": 1.0e-4, "evaluate": {}}, {"lr": 1.0e-4}) is None
    assert first_difference({"lr": 1.0e-4}, {"lr": 1.0e-4, "baseline": {"finetune": {}}}) is None


def test_known_sections_are_the_steps_phases_and_their_run_sections():
    known = settings.known_sections()
    assert {name: known[name] for name in ("prepare", "baseline", "mtl", "mtl_embed", "specialist", "evaluate", "ensemble")} == {
        "prepare": {},
        "baseline": {"pretrain": {}, "finetune": {}, "sst": {}, "cfimdb": {}},
        "mtl": {},
        "mtl_embed": {},
        "specialist": {"sst": {}, "quora": {}, "sts": {}},
        "evaluate": {},
        "ensemble": {},
    }
    # the order error messages list them in: prepare, the phases as registered, then the steps after training
    assert list(known) == ["fetch", "prepare", *phases.PHASES, "evaluate", "ensemble"]
    assert list(known["baseline"]) == ["pretrain", "finetune", "sst", "cfimdb"]


# -- load(): which file, and what it may hold ----------------------------------------------------


def test_load_reads_params_yaml_in_the_working_directory_else_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert settings.load() == settings.defaults()
    write(tmp_path, "lr: 3.0e-4\nspecialist:\n  sts:\n    epochs: 2\n")
    tree = settings.load()
    assert tree["lr"] == 3.0e-4 and tree["specialist"]["sts"] == {"epochs": 2}
    # the file overlays the defaults: what it does not say keeps the default
    assert tree["specialist"]["quora"] == {"head_lr": 3.0e-3, "online_contrastive": 0.1}


def test_a_params_file_given_that_does_not_exist_is_an_error(tmp_path):
    # Silently training on the defaults would hide a typo in --params.
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'nope.yaml'}: params file not found")):
        settings.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr: [1\n", "params.yaml: not valid YAML"),
        ("- lr\n", "params.yaml: expected a mapping of params at the top level"),
        ("lrr: 1.0\n", "unknown param lrr (" ),
        ("mtl:\n  lrr: 1.0\n", "unknown param lrr ("),
    ],
)
def test_unreadable_or_unknown_params_are_named(tmp_path, text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        settings.load(write(tmp_path, text))


def test_exponent_floats_as_dvc_writes_them_are_numbers(tmp_path):
    # `dvc exp run -S lr=2e-5` writes "lr: 2e-05", a string to a YAML 1.1 reader such as PyYAML's.
    tree = settings.load(write(tmp_path, "lr: 2e-05\nwarmup: .5E-1\nbaseline:\n  finetune:\n    head_lr: 1e+3\n"))
    resolved = resolve(tree, ("baseline", "baseline.finetune"))
    assert (resolved.lr, resolved.warmup, resolved.head_lr) == (2e-05, 0.05, 1000.0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("specialst:\n  lr: 1.0e-3\n", "unknown section specialst; known: fetch, prepare, baseline, mtl, mtl_embed, specialist"),
        ("specialist:\n  quroa:\n    lr: 1.0\n", "unknown section specialist.quroa; known: specialist.sst, specialist.quora, specialist.sts"),
        ("mtl:\n  sst:\n    lr: 1.0\n", "unknown section mtl.sst; known: none (mtl takes params only)"),
        ("baseline:\n  pretrian:\n    lr: 1.0\n", "unknown section baseline.pretrian; known: baseline.pretrain, baseline.finetune"),
    ],
)
def test_a_misspelt_section_is_named_not_ignored(tmp_path, text, message):
    # Runs read only the sections they know, so these would change nothing, silently.
    with pytest.raises(UserError, match=re.escape(message)):
        settings.load(write(tmp_path, text))


@pytest.mark.parametrize(
    "text, message",
    [
        # per-section settings given at the top level
        ("surgery: pcgrad\n", "param surgery is set per section (a phase's), not at the top level"),
        ("contrastive: mnrl\n", "param contrastive is set per section (a phase's), not at the top level"),
        ("sts_loss: cosent\n", "param sts_loss is set per section (a phase's), not at the top level"),
        ("cfimdb_max_length: 100\n", "param cfimdb_max_length is set per section (prepare), not at the top level"),
        ("match_multitask_steps: false\n", "param match_multitask_steps is set per section (specialist), not at the top level"),
        # section-only settings in another section
        ("mtl:\n  cfimdb_max_length: 100\n", "param cfimdb_max_length belongs in the section(s) prepare, not mtl"),
        ("prepare:\n  members: [mtl, specialist]\n", "param members belongs in the section(s) ensemble, not prepare"),
        ("mtl_embed:\n  match_multitask_steps: false\n", "param match_multitask_steps belongs in the section(s) specialist, not mtl_embed"),
    ],
)
def test_a_setting_in_the_wrong_place_is_refused(tmp_path, text, message):
    with pytest.raises(UserError, match=re.escape(f"params.yaml: {message}")):
        settings.load(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "mtl:\n  surgery: pcgrad\n",
        "prepare:\n  cfimdb_max_length: 100\n",
        "specialist:\n  match_multitask_steps: false\n",
        "ensemble:\n  members: [mtl, specialist]\n",
    ],
)
def test_the_same_settings_in_their_own_sections_are_fine(tmp_path, text):
    # the counterpart of the refusals above: the check is where a setting stands, not the setting
    settings.load(write(tmp_path, text))


@pytest.mark.parametrize(
    "text, key, section",
    [
        ("specialist:\n  sst:\n    token_alignment: false\n", "token_alignment", "specialist.sst"),  # no pairs to align
        ("specialist:\n  sts:\n    online_contrastive_margin: 0.3\n", "online_contrastive_margin", "specialist.sts"),
        ("mtl:\n  contrastive: mnrl\n", "contrastive", "mtl"),  # cross-encoded: no sentence embeddings
        ("mtl:\n  sts_loss: cosent\n", "sts_loss", "mtl"),
        ("specialist:\n  sst:\n    sts_loss: angle\n", "sts_loss", "specialist.sst"),  # no STS pairs
        ("mtl:\n  token_alignment: false\n", "token_alignment", "mtl"),
        ("baseline:\n  pretrain:\n    head_lr: 1.0\n", "head_lr", "baseline.pretrain"),  # frozen: nothing fine-tunes
        ("baseline:\n  pretrain:\n    compile: true\n", "compile", "baseline.pretrain"),
        ("specialist:\n  pooling: mean\n", "pooling", "specialist"),
        ("specialist:\n  data: elsewhere\n", "data", "specialist"),  # read by prepare only
    ],
)
def test_a_section_value_no_run_of_the_section_reads_is_refused(tmp_path, text, key, section):
    with pytest.raises(UserError, match=re.escape(f"params.yaml: param {key} in section {section} is read by none of its runs")):
        settings.load(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "specialist:\n  quora:\n    token_alignment: false\n",
        "specialist:\n  quora:\n    online_contrastive_margin: 0.3\n",
        "mtl_embed:\n  contrastive: mnrl\n",
        "specialist:\n  sts:\n    sts_loss: angle\n",
        "distill:\n  sts_loss: cosent\n",
        "mtl:\n  pooling: cls\n",
        "baseline:\n  head_lr: 1.0\n",  # read by the two fine-tuned baseline runs
        "baseline:\n  finetune:\n    compile: true\n",
    ],
)
def test_a_section_value_some_run_of_the_section_reads_is_fine(tmp_path, text):
    settings.load(write(tmp_path, text))


def test_values_are_checked_where_they_stand(tmp_path):
    with pytest.raises(UserError, match=re.escape("unknown surgery 'magic' in section mtl: choose one of none, pcgrad")):
        settings.load(write(tmp_path, "mtl:\n  surgery: magic\n"))
    with pytest.raises(UserError, match=re.escape("params.yaml: unknown sts_loss 'cosnet' in section mtl_embed: choose one of "
                                                  "cosine_similarity, cosent, angle")):
        settings.load(write(tmp_path, "mtl_embed:\n  sts_loss: cosnet\n"))
    with pytest.raises(UserError, match=re.escape("param batch_size in section baseline.cfimdb must be positive, got 0")):
        settings.load(write(tmp_path, "baseline:\n  cfimdb:\n    batch_size: 0\n"))
    with pytest.raises(UserError, match=re.escape("param compile must be true or false, got 1")):
        settings.load(write(tmp_path, "compile: 1\n"))
    with pytest.raises(UserError, match=re.escape("param lr must be a number, got 'abc'")):
        settings.load(write(tmp_path, "lr: abc\n"))


@pytest.mark.parametrize(
    "members",
    [["mtl"], ["mtl", "mtl"], ["mtl", "foo"], ["mtl", ["specialist"]], ["baseline", "mtl"]],
)
def test_ensemble_members_must_be_two_or_more_different_study_phases(tmp_path, members):
    # A repeated phase would be averaged with itself; the baseline has no quora or sts predictions.
    tree = {"ensemble": {"members": members}}
    study = ", ".join(phases.STUDY_PHASES)
    with pytest.raises(UserError, match=re.escape(f"param members in section ensemble must be two or more different phases of {study}, got {members!r}")):
        settings.load(write(tmp_path, yaml.safe_dump(tree)))


def test_ensemble_members_as_a_string_is_refused_not_read_letter_by_letter(tmp_path):
    with pytest.raises(UserError, match=re.escape("param members in section ensemble must be a list, got 'mtl'")):
        settings.load(write(tmp_path, "ensemble:\n  members: mtl\n"))


# -- NaN and infinity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr: .nan\n", "param lr must be a finite number, got nan"),
        ("dropout: .inf\n", "param dropout must be a finite number, got inf"),
        ("specialist:\n  sst:\n    ema: -.inf\n", "param ema in section specialist.sst must be a finite number, got -inf"),
        ("prepare:\n  cfimdb_max_length: .nan\n", "param cfimdb_max_length in section prepare must be a whole number, got nan"),
    ],
)
def test_nan_and_infinity_in_a_params_file_are_refused_by_name(tmp_path, text, message):
    # Every comparison with NaN is false, so a range check alone (lr > 0) would let it train.
    with pytest.raises(UserError, match=re.escape(message)):
        settings.load(write(tmp_path, text))


@pytest.mark.parametrize("value, text", [(math.nan, ".nan"), (math.inf, ".inf"), (-math.inf, "-.inf")])
def test_nan_and_infinity_as_overrides_are_refused_by_name(value, text):
    message = re.escape(f"param lr must be a finite number, got {value!r}")
    with pytest.raises(UserError, match=message):
        resolve({}, (), {"lr": value})
    with pytest.raises(UserError, match=message):
        resolve({}, (), settings.parse_assignments([f"lr={text}"]))
    with pytest.raises(UserError, match=re.escape(f"param grad_clip must be a finite number, got {value!r}")):
        resolve({}).replace(grad_clip=value)


# -- resolution --------------------------------------------------------------------------------


def test_top_level_then_sections_in_order_then_overrides():
    tree = {
        "lr": 1.0, "dropout": 0.2, "epochs": 3,
        "baseline": {"lr": 2.0, "epochs": 4, "pretrain": {"lr": 3.0}, "sst": {"lr": 4.0, "seed": 5}},
    }
    sections = ("baseline", "baseline.pretrain", "baseline.sst")
    s = resolve(tree, sections)
    assert (s.lr, s.epochs, s.dropout, s.seed, s.batch_size) == (4.0, 4, 0.2, 5, 32)
    assert (s.sources["lr"], s.sources["epochs"], s.sources["dropout"], s.sources["seed"], s.sources["batch_size"]) == (
        "baseline.sst", "baseline", "params", "baseline.sst", "default",
    )
    # the order of the sections decides, not their depth
    assert resolve(tree, ("baseline.sst", "baseline.pretrain")).lr == 3.0
    # an override beats every section; None (an option not given) is no override
    s = resolve(tree, sections, {"lr": 5.0, "epochs": None})
    assert (s.lr, s.sources["lr"], s.epochs, s.sources["epochs"]) == (5.0, "set", 4, "baseline")
    assert s["lr"] == s.lr  # a Mapping as well as attributes


def test_settings_replace_checks_and_marks_the_change():
    s = resolve({"lr": 1.0})
    changed = s.replace(dropout=0.5)
    assert (changed.dropout, changed.sources["dropout"], changed.lr, s.dropout) == (0.5, "set", 1.0, 0.3)
    with pytest.raises(UserError, match="param dropout must be in"):
        s.replace(dropout=1.5)
    with pytest.raises(UserError, match="unknown param dropuot"):
        s.replace(dropuot=0.5)


def test_resolve_step_reads_its_own_section_and_uses_only_its_settings():
    tree = settings.load(PARAMS)
    prepare = settings.resolve_step(tree, "prepare")
    assert prepare.used == STEPS["prepare"] and prepare.cfimdb_max_length == 256
    assert prepare.record() == {"checkpoint": "default", "max_length": 128, "cfimdb_max_length": 256}
    assert settings.resolve_step(tree, "fetch").record() == {"data": "../shared/data/cs224n"}
    assert settings.resolve_step(tree, "ensemble").members == ["mtl", "mtl_embed", "specialist"]
    evaluate = settings.resolve_step({**tree, "evaluate": {"eval_batch_size": 64}}, "evaluate", {"device": "cpu"})
    assert evaluate.record() == {"device": "cpu", "precision": "auto", "eval_batch_size": 64}


def test_describe_gives_value_meaning_and_source_of_each_used_setting():
    tree = settings.load(PARAMS)
    lines = settings.describe(run_settings(tree, run("specialist", "quora"), {"lr": 2e-5}))
    by_key = {line.split(":")[0]: line for line in lines}
    assert list(by_key) == list(run_settings(tree, run("specialist", "quora")).used)
    assert re.fullmatch(r"lr: +2\.0e-05 +# peak learning rate \(set\)", by_key["lr"])
    assert re.fullmatch(r"head_lr: +0\.003 +# .* \(specialist\.quora\)", by_key["head_lr"])
    assert re.fullmatch(r"contrastive: +none +# .* \(specialist\)", by_key["contrastive"])


# -- --set -----------------------------------------------------------------------------------


def test_set_parses_values_as_params_yaml_would():
    parsed = settings.parse_assignments(
        ["lr=2e-5", "head_lr=1E-3", "compile=true", "token_alignment=false", "epochs=3", "contrastive=mnrl", " dropout = 0.1"]
    )
    assert parsed == {"lr": 2e-5, "head_lr": 1e-3, "compile": True, "token_alignment": False, "epochs": 3,
                      "contrastive": "mnrl", "dropout": 0.1}
    assert type(parsed["lr"]) is float and type(parsed["epochs"]) is int and type(parsed["compile"]) is bool


@pytest.mark.parametrize(
    "pair, message",
    [
        ("specialist.sst.lr=1e-4", "--set specialist.sst.lr: sections belong in params.yaml; --set overrides the run's own setting (lr=...)"),
        ("lr", "--set 'lr': expected key=value, e.g. --set lr=2e-5"),
        ("=1", "--set '=1': expected key=value"),
        ("lrr=1", "--set lrr: unknown setting; known: checkpoint, data,"),
        ("lr=[1", "cannot read the value '[1'"),
    ],
)
def test_set_refuses_sections_malformed_and_unknown_keys(pair, message):
    with pytest.raises(UserError, match=re.escape(message)):
        settings.parse_assignments([pair])


def test_a_set_value_of_the_wrong_type_is_named_when_resolved():
    with pytest.raises(UserError, match="param epochs must be a whole number, got 2.5"):
        resolve({}, (), settings.parse_assignments(["epochs=2.5"]))
    with pytest.raises(UserError, match="param compile must be true or false, got 'yes please'"):
        resolve({}, (), settings.parse_assignments(["compile=yes please"]))


# -- what a run records --------------------------------------------------------------------------


def test_record_holds_only_the_settings_the_run_reads():
    tree = settings.load(PARAMS)
    pretrain = run_settings(tree, run("baseline", "sst", "pretrain")).record()
    # frozen: no fine-tuning settings; cross-encoded: pooling; one task: no surgery
    assert {"head_lr", "freeze_layers", "freeze_word_embeddings", "compile", "surgery", "token_alignment"}.isdisjoint(pretrain)
    assert pretrain["lr"] == 1.0e-3 and pretrain["pooling"] == "cls"
    mtl = run_settings(tree, run("mtl")).record()
    assert mtl["surgery"] == "none" and mtl["pooling"] == "mean"
    assert {"contrastive", "token_alignment", "online_contrastive", "match_multitask_steps", "data", "members"}.isdisjoint(mtl)
    sst = run_settings(tree, run("specialist", "sst")).record()
    assert sst["contrastive"] == "none" and sst["match_multitask_steps"] is True
    assert {"pooling", "surgery", "token_alignment", "online_contrastive", "contrastive_sts_min", "mnrl_scale"}.isdisjoint(sst)
    assert set(sst) == set(run_settings(tree, run("specialist", "sst")).used)


def test_value_dependent_settings_are_recorded_only_where_their_value_makes_them_used():
    tree = settings.load(PARAMS)
    quora = run("specialist", "quora")
    gist_keys = {"gist_temperature", "gist_margin", "guide"}
    plain = run_settings(tree, quora).record()
    assert gist_keys.isdisjoint(plain) and "mnrl_scale" not in plain and "contrastive_sts_min" not in plain
    # the quora specialist's online_contrastive (0.1) makes its margin used; mtl_embed's 0.0 does not
    assert plain["online_contrastive"] == 0.1 and plain["online_contrastive_margin"] == 0.5
    assert "online_contrastive_margin" not in run_settings(tree, run("mtl_embed")).record()
    gist = run_settings(tree, quora, {"contrastive": "gist"}).record()
    assert gist_keys | {"contrastive_sts_min"} <= set(gist) and "mnrl_scale" not in gist
    mnrl = run_settings(tree, quora, {"contrastive": "mnrl"}).record()
    assert "mnrl_scale" in mnrl and gist_keys.isdisjoint(mnrl)


def test_the_sts_loss_and_its_scale_are_recorded_by_the_siamese_sts_runs_only():
    tree = settings.load(PARAMS)
    sts = run_settings(tree, run("specialist", "sts")).record()
    assert sts["sts_loss"] == "cosine_similarity" and {"cosent_scale", "angle_scale"}.isdisjoint(sts)
    for other in (run("specialist", "sst"), run("specialist", "quora"), run("mtl")):
        assert {"sts_loss", "cosent_scale", "angle_scale"}.isdisjoint(run_settings(tree, other, {"sts_loss": "cosent"}).record())
    cosent = run_settings(tree, run("specialist", "sts"), {"sts_loss": "cosent"}).record()
    assert cosent["cosent_scale"] == 20.0 and "angle_scale" not in cosent
    angle = run_settings(tree, run("mtl_embed"), {"sts_loss": "angle"}).record()
    assert angle["angle_scale"] == 20.0 and "cosent_scale" not in angle
    assert run_settings(tree, run("distill")).record()["sts_loss"] == "cosine_similarity"


def test_from_record_restores_a_saved_run_with_defaults_for_the_rest():
    record = run_settings(settings.load(PARAMS), run("specialist", "sst")).record()
    restored = Settings.from_record(record)
    assert restored.record() == record and restored.batch_size == 16
    assert restored.pooling == SCHEMA["pooling"].default  # not recorded: the schema's default


# -- overrides no run reads ----------------------------------------------------------------------


def test_unused_overrides_are_those_no_run_reads():
    specialists = [r.shape for r in phases.get("specialist").runs()]
    overrides = {"pooling": "mean", "lr": 1e-4, "surgery": None, "token_alignment": False, "contrastive": "mnrl"}
    # None is an option not given; token_alignment is read by the quora specialist alone
    assert settings.unused_overrides(overrides, specialists) == ["pooling"]
    assert settings.unused_overrides({"token_alignment": False}, [run("specialist", "sst").shape]) == ["token_alignment"]
    assert settings.unused_overrides({"surgery": "pcgrad", "contrastive": "mnrl"}, [run("mtl").shape]) == ["contrastive"]
    baseline = phases.get("baseline")
    assert settings.unused_overrides({"head_lr": 0.1}, [baseline.select("sst", "pretrain")[0].shape]) == ["head_lr"]
    # a setting read by any of the runs is used
    assert settings.unused_overrides({"head_lr": 0.1}, [r.shape for r in baseline.runs()]) == []
    # which runs read a setting is its declaration's ``applies``: a toy shape shows the rule
    assert settings.unused_overrides({"surgery": "pcgrad"}, [RunShape("x", ("sst",), "cross")]) == ["surgery"]
    assert settings.unused_overrides({"surgery": "pcgrad"}, [RunShape("x", ("sst", "sts"), "cross")]) == []


# -- stage_params: what a DVC training stage lists --------------------------------------------


def uncovered(tree: dict, r: phases.Run, listed: set[str], overrides: dict | None = None) -> list[str]:
    """The settings a run records whose value comes from params.yaml through nothing ``listed``
    holds: a top-level value not listed, or a section's value with neither it nor a parent listed.
    A changed value there would leave DVC's stage unchanged, and the run stale."""
    s = resolve(tree, r.sections, overrides, r.shape)
    missing = []
    for key in s.used:
        source = s.sources[key]
        if source == "set":
            continue  # the stage's own command sets it (the ablation's contrastive)
        if source in ("params", "default"):
            if SCHEMA[key].top_level and key not in listed:
                missing.append(key)
        else:
            parts = source.split(".")
            if not any(".".join(parts[:i]) in listed for i in range(1, len(parts) + 1)):
                missing.append(key)
    return missing


def all_runs():
    return [r for phase in phases.PHASES.values() for r in phase.runs()]


@pytest.mark.parametrize("overrides", [None, {"contrastive": "gist"}, {"contrastive": "mnrl"}])
def test_stage_params_cover_every_setting_each_run_records(overrides):
    tree = settings.load(PARAMS)
    for r in all_runs():
        applies = overrides is None or SCHEMA["contrastive"].applies(r.shape)
        if applies:
            assert uncovered(tree, r, settings.stage_params(tree, [r]), overrides) == [], r.name


def test_the_coverage_check_names_a_setting_left_out():
    # uncovered() above, shown to fail: the quora specialist's list without lr, or without its section
    tree = settings.load(PARAMS)
    quora = run("specialist", "quora")
    listed = settings.stage_params(tree, [quora])
    assert uncovered(tree, quora, listed - {"lr"}) == ["lr"]
    assert set(uncovered(tree, quora, listed - {"specialist"})) == {"contrastive", "head_lr", "online_contrastive", "match_multitask_steps"}


def test_stage_params_lists_what_each_run_reads_and_no_more():
    tree = settings.load(PARAMS)
    listed = settings.stage_params(tree, [run("specialist", "sts")])
    # siamese: no pooling; sts alone: no token alignment nor online contrastive (quora's)
    assert {"pooling", "token_alignment", "online_contrastive", "online_contrastive_margin", "surgery", "data"}.isdisjoint(listed)
    assert {"lr", "head_lr", "mnrl_scale", "gist_margin", "guide", "specialist"} <= listed
    # "specialist" covers specialist.sts: listing both would be redundant
    assert not any(name.startswith("specialist.") for name in listed)
    pretrain = settings.stage_params(tree, [run("baseline", "sst", "pretrain")])
    # lr and epochs come from baseline.pretrain, so a top-level change does not reach the stage
    assert {"lr", "epochs", "head_lr", "compile"}.isdisjoint(pretrain)
    # baseline holds only subsections: each run lists its own (even the empty baseline.sst)
    assert {"baseline.pretrain", "baseline.sst"} <= pretrain and "baseline" not in pretrain


def test_stage_params_follows_params_yaml():
    tree = settings.load(PARAMS)
    mtl = [run("mtl")]
    assert "lr" in settings.stage_params(tree, mtl)
    shadowed = settings.overlay(tree, {"mtl": {"lr": 3e-5}})
    assert "lr" not in settings.stage_params(shadowed, mtl) and "mtl" in settings.stage_params(shadowed, mtl)
    # a scalar in the baseline section: "baseline" is listed, and covers its subsections
    with_scalar = settings.overlay(tree, {"baseline": {"dropout": 0.2}})
    listed = settings.stage_params(with_scalar, [run("baseline", "cfimdb", "finetune")])
    assert "baseline" in listed and not any(name.startswith("baseline.") for name in listed) and "dropout" not in listed


@pytest.mark.parametrize("text", ["evaluate:\n  lr: 1.0\n", "prepare:\n  seed: 3\n", "ensemble:\n  device: cpu\n"])
def test_a_step_section_value_the_step_does_not_read_is_refused(tmp_path, text):
    with pytest.raises(UserError, match="is not read by the"):
        settings.load(write(tmp_path, text))


@pytest.mark.parametrize("pair", ["lr=", "lr=null"])
def test_set_without_a_value_is_refused(pair):
    with pytest.raises(UserError, match="no value"):
        settings.parse_assignments([pair])
