"""dvc.yaml and ablation/dvc.yaml against the code, read through DVC's own API: each stage lists
exactly the params its runs read (so `dvc exp run -S lr=...` re-runs exactly the stages lr
reaches) and depends on exactly the code its script imports (so an edit re-runs exactly the
stages it can change); every registered phase is trained, evaluated, reported and plotted.

Each check returns its problems as lines naming the stage and the missing or extra entries; the
tests at the end show each finds a broken copy of the files."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import register_phase

from optiminbert.errors import UserError

from optiminbert import phases, settings
from optiminbert.steps import teach
from optiminbert.paths import LIVE, METRICS, MODELS

pytest.importorskip("dvc")
from dvc.dependency.param import ParamsDependency  # noqa: E402
from dvc.repo import Repo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tuple(f"stages/{p.name}" for p in sorted((ROOT / "stages").glob("*.py")))  # every stage script


# -- reading the pipelines -----------------------------------------------------------------------


class Pipelines:
    """The stages of dvc.yaml and ablation/dvc.yaml under ``root``, with each file's top-level
    ``metrics`` and ``plots``."""

    def __init__(self, root: Path):
        self.root = root
        with Repo(str(root), uninitialized=True) as repo:
            self.stages = list(repo.index.stages)
            self.files = {rel(stage.dvcfile.path, root): stage.dvcfile for stage in self.stages}
            self.metrics = {name: list(f.metrics) for name, f in self.files.items()}
            self.plots = {name: plot_files(f.plots) for name, f in self.files.items()}
            artifacts = yaml.safe_load((root / "dvc.yaml").read_text()).get("artifacts", {})
            self.models = {a["path"] for a in artifacts.values() if a.get("type") == "model"}

    def address(self, stage) -> str:
        """``mtl``, ``evaluate@mtl``, ``ablation/dvc.yaml:report`` (DVC's own addressing is
        relative to the working directory, not the pipeline's root)."""
        dvcfile = rel(stage.dvcfile.path, self.root)
        return stage.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{stage.name}"

    def stage(self, address: str):
        return next((s for s in self.stages if self.address(s) == address), None)


def rel(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def plot_files(definitions: list) -> set[str]:
    """The data files the top-level plots draw (a plot's id, or the files under its ``y``)."""
    files = set()
    for definition in definitions:
        for plot_id, props in (definition.items() if isinstance(definition, dict) else [(definition, None)]):
            y = (props or {}).get("y")
            files.update(y if isinstance(y, dict) else [plot_id])
    return files


def listed_params(stage, root: Path) -> set[str]:
    """The stage's params: params.yaml's by name, another file's as ``file:name``."""
    listed = set()
    for dep in stage.deps:
        if isinstance(dep, ParamsDependency):
            source = rel(dep.fs_path, root)
            listed.update(p if source == "params.yaml" else f"{source}:{p}" for p in dep.params)
    return listed


def dep_paths(stage, root: Path) -> set[str]:
    return {rel(dep.fs_path, root) for dep in stage.deps if not isinstance(dep, ParamsDependency)}


def out_paths(stage, root: Path) -> set[str]:
    return {rel(out.fs_path, root) for out in stage.outs}


def code_deps(stage, root: Path) -> set[str]:
    return {p for p in dep_paths(stage, root) if p.split("/")[0] in ("optiminbert", "stages")}


def argv(stage) -> list[str]:
    words = shlex.split(stage.cmd)
    assert words[0] == "python" and words[1] in SCRIPTS, f"{stage.addressing}: unexpected cmd {stage.cmd!r}"
    return words


def option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def training_runs(stage) -> list[phases.Run] | None:
    """The runs a training stage trains (from its cmd, as the stage script reads it), else None."""
    words = argv(stage)
    if words[1] == "stages/train.py":
        return phases.get(words[2]).select(option(words, "--task"), option(words, "--mode"))
    if words[1:3] == ["stages/ablation.py", "train"]:  # train LOSS TASK: that specialist, contrastive=LOSS
        return phases.get("specialist").select(words[4])
    if words[1] in ("stages/study.py", "stages/study_timing.py"):  # mtl_embed, varied
        return phases.get("mtl_embed").runs()
    return None


def study_params(stage) -> set[str]:
    """What a stage lists of the study's own params file: a variant's run, its own entry; the
    timing, every variant and the harness; the report, the variants, the pairs and the seeds."""
    words = argv(stage)
    if words[1] == "stages/study.py":
        return set() if words[2] == "default" else {f"study/params.yaml:variants.{words[2]}"}
    if words[1] in ("stages/study_timing.py", "stages/study_report.py"):
        keys = ("variants", "timing") if words[1] == "stages/study_timing.py" else ("variants", "paired", "seeds")
        return {f"study/params.yaml:{key}" for key in keys}
    return set()


def step_of(stage) -> str | None:
    """The settings.STEPS step a stage that trains nothing runs (None: it reads no params)."""
    words = argv(stage)
    if words[1] in ("stages/fetch.py", "stages/prepare.py"):
        return Path(words[1]).stem
    if words[1] == "stages/evaluate.py":
        return "ensemble" if words[2] == "ensemble" else "evaluate"
    if words[1] == "stages/teach.py":
        return "teach"
    return None


def group(address: str) -> str:
    """A stage's definition: ``baseline_pretrain`` for each of its matrix items, itself otherwise."""
    return address.split("@")[0]


def describe(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "-"


# -- the checks ----------------------------------------------------------------------------------


def params_problems(pipelines: Pipelines, tree: dict) -> list[str]:
    """A training stage lists ``settings.stage_params`` of its runs; a matrix stage (one params
    list for all its items) the union over its items, and each item at least its own. A stage
    that trains nothing lists its step's top-level settings and its section; the report, none."""
    problems = []
    expected_by_group: dict[str, set[str]] = {}
    listed_by_group: dict[str, set[str]] = {}
    for stage in pipelines.stages:
        runs = training_runs(stage)
        if runs is not None:
            expected = settings.stage_params(tree, runs)
        elif step_of(stage) == "teach":  # the top level's device and batch size, and only distill.teachers
            expected = {k for k in teach.READS if settings.SCHEMA[k].top_level} | {"distill.teachers"}
        elif step_of(stage) is not None:
            step = step_of(stage)
            expected = {k for k in settings.STEPS[step] if settings.SCHEMA[k].top_level} | {step}
        else:
            expected = set()
        expected |= study_params(stage)
        listed, address = listed_params(stage, pipelines.root), pipelines.address(stage)
        if expected - listed:
            problems.append(f"{address}: params missing {describe(expected - listed)}")
        expected_by_group.setdefault(group(address), set()).update(expected)
        listed_by_group.setdefault(group(address), set()).update(listed)
    for name, expected in expected_by_group.items():
        extra = listed_by_group[name] - expected
        if extra:
            problems.append(f"{name}: params extra {describe(extra)} (no run of the stage reads them)")
    return problems


# One Python for every script: each starts from no optiminbert module imported, as a stage's own
# process would (the third-party modules stay loaded: they cannot change what optiminbert imports,
# and loading torch once instead of five times keeps this test quick on a busy 2-core machine).
CLOSURE = """
import importlib.util, json, sys
found = {}
for script in sys.argv[1:]:
    for name in [n for n in sys.modules if n.split('.')[0] == 'optiminbert']:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("stage", script)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    found[script] = sorted(m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'optiminbert' and getattr(m, '__file__', None))
print(json.dumps(found))
"""


def import_closures(root: Path, scripts=SCRIPTS) -> dict[str, set[str]]:
    """Each script's code dependencies: the optiminbert files it imports, a package directory
    where it imports all of that package's modules, optiminbert/__init__.py left out (empty)."""
    result = subprocess.run([sys.executable, "-c", CLOSURE, *scripts], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    closures = {}
    for script, files in json.loads(result.stdout).items():
        imported = {Path(rel(f, root)) for f in files}
        deps = set()
        for f in imported:
            package = f.parent
            if package != Path("optiminbert") and all(Path(rel(str(p), root)) in imported for p in (root / package).glob("*.py")):
                deps.add(package.as_posix())
            elif f != Path("optiminbert/__init__.py"):
                deps.add(f.as_posix())
        closures[script] = deps
    return closures


def code_problems(pipelines: Pipelines, closures: dict[str, set[str]]) -> list[str]:
    problems = []
    for stage in pipelines.stages:
        script = argv(stage)[1]
        expected = {script} | closures[script]
        listed = code_deps(stage, pipelines.root)
        if expected != listed:
            problems.append(f"{pipelines.address(stage)}: code deps missing {describe(expected - listed)}, extra {describe(listed - expected)}")
    return problems


def uncovered_paths(paths: set[str], held: set[str]) -> set[str]:
    """The ``paths`` none of ``held`` is or holds (a directory holds what is under it)."""
    return {path for path in paths if not any(path == h or path.startswith(h + "/") for h in held)}


def missing_outputs(run: phases.Run, outs: set[str]) -> set[str]:
    """What ``run`` writes that none of a stage's outs holds: its model directory (an out may be a
    directory above it: models/specialist) and its DVCLive files (histories, settings, latest values)."""
    live = f"{LIVE}/{run.name}"
    written = {run.path(MODELS).as_posix(), f"{live}/plots", f"{live}/params.yaml", f"{live}/metrics.json"}
    return uncovered_paths(written, outs)


def dev_curve(run: phases.Run, task: str) -> str:
    return f"{LIVE}/{run.name}/plots/metrics/dev/{task}.tsv"


def phase_problems(pipelines: Pipelines) -> list[str]:
    """Every registered phase: each run trained by a stage of dvc.yaml that outputs its model and
    DVCLive files, its latest values among that stage's metrics (live in dvc exp show); an
    evaluate stage that depends on its models and outputs its metrics file; that file in
    dvc.yaml's metrics and the report's deps; its runs' dev curves in dvc.yaml's plots; its
    models declared as an artifact of type model."""
    main = [s for s in pipelines.stages if rel(s.dvcfile.path, pipelines.root) == "dvc.yaml"]
    report = next((s for s in main if argv(s)[1] == "stages/report.py"), None)
    report_deps = dep_paths(report, pipelines.root) if report else set()
    problems = [] if report else ["dvc.yaml: no report stage"]
    for phase in phases.PHASES.values():
        for run in phase.runs():
            trainers = [s for s in main if run in (training_runs(s) or [])]
            if not trainers:
                problems.append(f"phase {phase.name}: no stage of dvc.yaml trains run {run.name}")
            for stage in trainers:
                lacking = missing_outputs(run, out_paths(stage, pipelines.root))
                if lacking:
                    problems.append(f"{pipelines.address(stage)}: outs lack {describe(lacking)}")
                live = f"{LIVE}/{run.name}/metrics.json"
                if live not in {rel(out.fs_path, pipelines.root) for out in stage.outs if out.metric}:
                    problems.append(f"{pipelines.address(stage)}: {live} is not among its metrics")
            for task in run.tasks:
                if dev_curve(run, task) not in pipelines.plots.get("dvc.yaml", set()):
                    problems.append(f"phase {phase.name}: {dev_curve(run, task)} not in dvc.yaml's plots")
        models = {run.path(MODELS).as_posix() for run in phase.runs()}
        if not any(uncovered_paths(models, {path}) == set() for path in pipelines.models):
            problems.append(f"phase {phase.name}: no artifact of type model holds {describe(models)}")
        evaluate = f"evaluate@{phase.name}" if phase.study else f"evaluate_{phase.name}"
        stage = pipelines.stage(evaluate)
        if stage is None:
            problems.append(f"phase {phase.name}: no stage {evaluate} in dvc.yaml")
        metrics = f"{METRICS}/{phase.name}.json"
        if stage is not None and argv(stage)[1:] != ["stages/evaluate.py", phase.name]:
            problems.append(f"{evaluate}: cmd {stage.cmd!r} does not evaluate {phase.name}")
        elif stage is not None:
            # re-run when any of the phase's models changes; its metrics are this stage's own
            models = {run.path(MODELS).as_posix() for run in phase.runs()}
            lacking = {f"dep {path}" for path in uncovered_paths(models, dep_paths(stage, pipelines.root))}
            if metrics not in out_paths(stage, pipelines.root):
                lacking.add(f"out {metrics}")
            if lacking:
                problems.append(f"{evaluate}: lacks {describe(lacking)}")
        if metrics not in pipelines.metrics.get("dvc.yaml", []):
            problems.append(f"phase {phase.name}: {metrics} not in dvc.yaml's metrics")
        if report and metrics not in report_deps:
            problems.append(f"phase {phase.name}: {metrics} not in the report stage's deps")
    return problems


# -- the project's files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipelines() -> Pipelines:
    return Pipelines(ROOT)


@pytest.fixture(scope="module")
def tree() -> dict:
    return settings.load(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def closures() -> dict[str, set[str]]:
    return import_closures(ROOT)


def test_the_pipelines_have_the_stages_the_checks_read(pipelines):
    # The checks below loop over stages: with none read, they would find nothing wrong.
    names = {pipelines.address(s) for s in pipelines.stages}
    assert {"prepare", "mtl", "specialist", "evaluate_baseline", "evaluate@mtl", "ensemble", "report",
            "ablation/dvc.yaml:train@mnrl-quora", "ablation/dvc.yaml:report"} <= names
    assert sum(training_runs(s) is not None for s in pipelines.stages) >= 11  # the study's 7, the ablation's 4


def test_each_stage_lists_exactly_the_params_its_runs_read(pipelines, tree):
    problems = params_problems(pipelines, tree)
    assert problems == [], "\n".join(problems)


def test_each_stage_depends_on_exactly_the_code_its_script_imports(pipelines, closures):
    problems = code_problems(pipelines, closures)
    assert problems == [], "\n".join(problems)


def test_no_stage_reads_a_path_outside_the_repository(pipelines):
    """DVC runs queued and --temp experiments in a copy of the repository, where a path outside it
    (the data source once was) does not exist; the fetch stage copies the data inside."""
    outside = {pipelines.address(s): sorted(p for p in dep_paths(s, ROOT) if p.startswith("..")) for s in pipelines.stages}
    assert {address: paths for address, paths in outside.items() if paths} == {}
    assert "data/raw" in dep_paths(pipelines.stage("prepare"), ROOT)
    assert out_paths(pipelines.stage("fetch"), ROOT) == {"data/raw"}


def test_every_phase_is_trained_evaluated_reported_and_plotted(pipelines):
    problems = phase_problems(pipelines)
    assert problems == [], "\n".join(problems)


def test_the_ablation_trains_the_default_specialist_with_each_loss(pipelines):
    # what training_runs() reads from the ablation's cmd is what steps/ablation.py trains
    from optiminbert.steps import ablation

    stage = pipelines.stage("ablation/dvc.yaml:train@gist-sts")
    trained = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ablation, "train", lambda tree, phase, task, **kw: trained.append((phase, task, kw["overrides"])))
        ablation.train_ablation({}, *argv(stage)[3:5])
    assert trained == [("specialist", "sts", {"contrastive": "gist"})]
    assert [r.name for r in training_runs(stage)] == ["specialist-sts"]


def test_the_study_trains_mtl_embed_with_each_variant(pipelines):
    # every variant of study/params.yaml has its stage, and the stage trains what it names
    from optiminbert import study
    from optiminbert.steps import study as steps

    declared = study.load(ROOT / study.PARAMS)
    scripts = {s: argv(s) for s in pipelines.stages if argv(s)[1] == "stages/study.py"}
    assert sorted(words[2] for words in scripts.values() if "--seed" not in words) == sorted(declared.variants)
    seeded = sorted(words[2:] for words in scripts.values() if "--seed" in words)
    assert seeded == sorted([v, "--seed", str(seed)] for v in (study.DEFAULT, *declared.paired) for seed in declared.seeds)
    trained = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        patch.setattr(steps, "train", lambda tree, phase, **kw: trained.append((phase, kw["overrides"], kw["root"])))
        steps.train_variant({}, argv(pipelines.stage("study/dvc.yaml:train@famo"))[2])
        words = argv(pipelines.stage("study/dvc.yaml:paired@smart-2"))
        steps.train_variant({}, words[2], int(option(words, "--seed")))
        steps.train_variant({}, "default", 1)
        with pytest.raises(UserError, match="unknown variant to re-seed 'rlw'"):
            steps.train_variant({}, "rlw", 2)
    assert trained == [("mtl_embed", {"surgery": "famo"}, Path("study/runs/famo")),
                       ("mtl_embed", {"smart_weight": 1.0, "seed": 2}, Path("study/seeds/smart-2")),
                       ("mtl_embed", {"seed": 1}, Path("study/seeds/default-1"))]
    # the report reads every run: the folders holding them are its deps, and DVC orders it after them
    report = pipelines.stage("study/dvc.yaml:report")
    assert {"models/mtl_embed", "study/timings.json", "study/runs", "study/seeds"} <= dep_paths(report, pipelines.root)
    runs = {p for s in scripts for p in out_paths(s, pipelines.root) if p.endswith("/models/mtl_embed")}
    assert len(runs) == len(declared.variants) + (1 + len(declared.paired)) * len(declared.seeds)
    assert uncovered_paths(runs, {"study/runs", "study/seeds"}) == set()


# -- the checks find broken copies ------------------------------------------------------------------


def broken_copy(tmp_path: Path, edit=None, params_edit=None) -> Pipelines:
    """dvc.yaml, ablation/dvc.yaml and params.yaml copied into ``tmp_path``, ``edit(main, ablation)``
    applied to the two pipelines' YAML (``params_edit(text)`` to params.yaml's text). An edit must
    rebind a list rather than change it in place: YAML anchors (``deps: *train``) share one."""
    main = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    ablation = yaml.safe_load((ROOT / "ablation/dvc.yaml").read_text())
    if edit:
        edit(main, ablation)
    (tmp_path / "ablation").mkdir()
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(main, sort_keys=False))
    (tmp_path / "ablation/dvc.yaml").write_text(yaml.safe_dump(ablation, sort_keys=False))
    params = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(params_edit(params) if params_edit else params)
    return Pipelines(tmp_path)


def without(items: list, *drop) -> list:
    for item in drop:
        assert item in items, item
    return [i for i in items if i not in drop]


def test_an_unchanged_copy_has_the_projects_problems(tmp_path, pipelines, tree, closures):
    # the baseline for the broken copies below: copying alone changes nothing the checks see
    copy = broken_copy(tmp_path)
    assert params_problems(copy, settings.load(tmp_path / "params.yaml")) == params_problems(pipelines, tree)
    assert code_problems(copy, closures) == code_problems(pipelines, closures)
    assert phase_problems(copy) == phase_problems(pipelines)


def test_a_missing_or_extra_param_is_named_with_its_stage(tmp_path, tree):
    def edit(main, ablation):
        stages = main["stages"]
        stages["mtl"]["params"] = without(stages["mtl"]["params"], "ema")
        stages["specialist"]["params"] = stages["specialist"]["params"] + ["pooling"]  # cross-encoded heads only
        # one item's own section swapped for the other's: the union is unchanged, each item misses its own
        stages["baseline_pretrain"]["params"] = without(stages["baseline_pretrain"]["params"], "baseline.${item.task}") + ["baseline.sst"]
        stages["evaluate"]["do"]["params"] = without(stages["evaluate"]["do"]["params"], "evaluate")
        stages["report"]["params"] = ["lr"]
        # head_lr: read by the sts items only (specialist.quora sets the quora run's own)
        ablation["stages"]["train"]["params"] = without(ablation["stages"]["train"]["params"], "head_lr")

    problems = params_problems(broken_copy(tmp_path, edit), tree)
    assert problems == [
        "baseline_pretrain@cfimdb: params missing baseline.cfimdb",
        "mtl: params missing ema",
        *(f"evaluate@{phase}: params missing evaluate" for phase in phases.STUDY_PHASES),
        "ablation/dvc.yaml:train@mnrl-sts: params missing head_lr",
        "ablation/dvc.yaml:train@gist-sts: params missing head_lr",
        "specialist: params extra pooling (no run of the stage reads them)",
        "report: params extra lr (no run of the stage reads them)",
    ]


def test_a_params_yaml_section_that_shadows_a_setting_makes_its_listing_extra(tmp_path, tree):
    # With mtl's own lr in params.yaml, `-S lr=...` no longer changes the mtl run: listing lr
    # would re-run the stage for nothing.
    copy = broken_copy(tmp_path, params_edit=lambda text: text.replace("  pooling: mean", "  pooling: mean\n  lr: 3.0e-5"))
    assert params_problems(copy, settings.load(tmp_path / "params.yaml")) == [
        "mtl: params extra lr (no run of the stage reads them)"
    ]


def test_a_missing_or_extra_code_dep_is_named_with_its_stage(tmp_path, closures):
    def edit(main, ablation):
        stages = main["stages"]
        stages["evaluate_baseline"]["deps"] = without(stages["evaluate_baseline"]["deps"], "optiminbert/rundir.py")
        stages["report"]["deps"] = stages["report"]["deps"] + ["optiminbert/training.py"]
        stages["mtl"]["deps"] = [d if d != "optiminbert/losses" else "optiminbert/losses/mnrl.py" for d in stages["mtl"]["deps"]]
        ablation["stages"]["report"]["deps"] = without(ablation["stages"]["report"]["deps"], "stages/ablation.py")

    problems = code_problems(broken_copy(tmp_path, edit), closures)
    assert problems == [
        "mtl: code deps missing optiminbert/losses, extra optiminbert/losses/mnrl.py",
        "evaluate_baseline: code deps missing optiminbert/rundir.py, extra -",
        "report: code deps missing -, extra optiminbert/training.py",
        "ablation/dvc.yaml:report: code deps missing stages/ablation.py, extra -",
    ]


def test_the_import_closure_follows_the_imports(tmp_path, closures):
    # Toy stage scripts (outside the repository, importing its package): a module more imported
    # is a dependency more; a package's directory stands for it only once all its modules are in.
    scripts = {
        "report_plus": "import optiminbert.steps.report\nimport optiminbert.ablation\n",
        "one_step": "import optiminbert.steps.prepare\n",
        "every_step": "".join(f"import optiminbert.steps.{m.stem}\n" for m in (ROOT / "optiminbert/steps").glob("*.py")),
    }
    for name, text in scripts.items():
        (tmp_path / f"{name}.py").write_text("import typer\nfrom optiminbert.errors import run_app\n" + text)
    found = import_closures(ROOT, [str(tmp_path / f"{name}.py") for name in scripts])
    report_plus, one_step, every_step = (found[str(tmp_path / f"{name}.py")] for name in scripts)
    assert report_plus - closures["stages/report.py"] == {"optiminbert/ablation.py"}
    assert closures["stages/report.py"] <= report_plus
    assert {"optiminbert/steps/__init__.py", "optiminbert/steps/prepare.py"} <= one_step and "optiminbert/steps" not in one_step
    assert "optiminbert/steps" in every_step and not any(d.startswith("optiminbert/steps/") for d in every_step)


def test_a_phase_missing_from_the_pipeline_is_named(tmp_path):
    def edit(main, ablation):
        stages = main["stages"]
        stages["evaluate"]["foreach"] = without(stages["evaluate"]["foreach"], "mtl_embed")
        main["metrics"] = without(main["metrics"], "metrics/specialist.json")
        stages["report"]["deps"] = without(stages["report"]["deps"], "metrics/baseline.json")
        del main["plots"][0]["SST dev accuracy while training"]["y"]["dvclive/mtl/plots/metrics/dev/sst.tsv"]
        del main["artifacts"]["mtl-embed"]
        stages["baseline_finetune"]["matrix"]["task"] = without(stages["baseline_finetune"]["matrix"]["task"], "cfimdb")
        stages["specialist"]["outs"] = without(stages["specialist"]["outs"], {"dvclive/specialist-sts/params.yaml": {"cache": False}})
        stages["mtl"]["outs"] += stages["mtl"].pop("metrics")  # a file, no longer a metric
        stages["evaluate_baseline"]["deps"] = without(stages["evaluate_baseline"]["deps"], "models/baseline") + ["models/baseline/sst-finetune"]
        stages["evaluate"]["do"]["outs"] = without(stages["evaluate"]["do"]["outs"], {"metrics/${item}.json": {"cache": False}})

    expected = {
        "baseline": [
            "phase baseline: no stage of dvc.yaml trains run baseline-cfimdb-finetune",
            "evaluate_baseline: lacks dep models/baseline/cfimdb-finetune, dep models/baseline/cfimdb-pretrain, dep models/baseline/sst-pretrain",
            "phase baseline: metrics/baseline.json not in the report stage's deps",
        ],
        "mtl": ["mtl: dvclive/mtl/metrics.json is not among its metrics",
                "phase mtl: dvclive/mtl/plots/metrics/dev/sst.tsv not in dvc.yaml's plots",
                "evaluate@mtl: lacks out metrics/mtl.json"],
        "mtl_embed": ["phase mtl_embed: no artifact of type model holds models/mtl_embed",
                      "phase mtl_embed: no stage evaluate@mtl_embed in dvc.yaml"],
        "specialist": [
            "specialist: outs lack dvclive/specialist-sts/params.yaml",
            "evaluate@specialist: lacks out metrics/specialist.json",
            "phase specialist: metrics/specialist.json not in dvc.yaml's metrics",
        ],
    }
    # a phase registered beyond the four loses its evaluate stage's metrics out with the others
    assert phase_problems(broken_copy(tmp_path, edit)) == [
        line for name in phases.PHASES for line in expected.get(name, [f"evaluate@{name}: lacks out metrics/{name}.json"])
    ]


def test_a_phase_added_to_the_registry_but_not_the_pipeline_is_named(monkeypatch, pipelines):
    register_phase(monkeypatch, phases.JointPhase(name="toy", title="Toy", description="a test's", pairs="cross"))
    assert phase_problems(pipelines) == [
        "phase toy: no stage of dvc.yaml trains run toy",
        *(f"phase toy: dvclive/toy/plots/metrics/dev/{task}.tsv not in dvc.yaml's plots" for task in ("sst", "quora", "sts")),
        "phase toy: no artifact of type model holds models/toy",
        "phase toy: no stage evaluate@toy in dvc.yaml",
        "phase toy: metrics/toy.json not in dvc.yaml's metrics",
        "phase toy: metrics/toy.json not in the report stage's deps",
    ]
