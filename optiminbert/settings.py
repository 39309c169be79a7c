"""Every setting, declared once, and how a run's settings are resolved from them.

The schema is the core settings below plus those each phase, gradient strategy and loss declares
beside its own code. Their defaults, with the phases' sections, form the embedded defaults tree:
exactly what params.yaml holds (a test compares them key by key), so a run outside the project
(no params.yaml) trains the study's model.

A run's settings: the top-level values, then its sections in order (``baseline``, then
``baseline.pretrain``, then ``baseline.sst``), then the command line's overrides; so
``dvc exp run -S lr=2e-5`` reaches every run whose sections do not set their own ``lr``.
Each setting says which runs read it (``Setting.applies``); a run records only those it uses,
and a value set explicitly (a section, ``--set``) where no run reads it is an error.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Iterator

import yaml

from optiminbert import contrastive, losses, phases, smart, surgery
from optiminbert.errors import UserError
from optiminbert.schema import RunShape, Setting, at_least, fine_tuning, positive, within


def _ensemble_members(members: list) -> str | None:
    study = phases.STUDY_PHASES
    if all(isinstance(m, str) and m in study for m in members) and len(set(members)) >= 2:
        return None
    return f"two or more different phases of {', '.join(study)}"


CORE = (
    Setting("checkpoint", "default", "'default' (all-MiniLM-L6-v2), a Hugging Face BERT directory or Hub name (name@revision)"),
    Setting("data", "../shared/data/cs224n", "the CS224N task files: a local directory, or the starter repo's data/ URL",
            applies=None),
    Setting("device", "auto", "where to train and evaluate", choices=("auto", "cpu", "cuda")),
    Setting("precision", "auto", "autocast dtype (auto: bf16 where the GPU or CPU has it natively, else fp16 on a GPU, else fp32)",
            choices=("auto", "bf16", "fp16", "fp32")),
    Setting("seed", 11711, "seeds the heads, dropout, data order and gradient methods", check=within(0, 2**32)),
    Setting("max_length", 128, "tokens a text (a cross-encoded pair: both texts) is cut to", check=positive),
    Setting("lr", 1.0e-4, "peak learning rate", check=positive),
    Setting("head_lr", 1.0e-3, "the task heads' peak learning rate while the encoder fine-tunes (0: lr)",
            check=at_least(0), applies=fine_tuning),
    Setting("epochs", 1, "passes over the largest task", check=positive),
    Setting("steps_per_epoch", 0, "round-robin steps per epoch (0: one pass over the largest task)", check=at_least(0)),
    Setting("batch_size", 32, "training examples per task and step", check=positive),
    Setting("accumulate", 1, "cut each batch into this many micro-batches whose gradients add up to the batch's: the "
            "same step at a fraction of the memory (an in-batch loss's batch stays whole)", check=positive),
    Setting("eval_batch_size", 128, "examples per batch when scoring", check=positive),
    Setting("dropout", 0.3, "dropout before each task head", check=within(0, 1)),
    Setting("eval_every", 0, "also score dev every this many steps, for the live curves (0: at each epoch's end only); "
            "the kept weights are still an epoch end's", check=at_least(0)),
    Setting("warmup", 0.1, "linear warm-up over this fraction of the steps, then linear decay", check=within(0, 1)),
    Setting("grad_clip", 1.0, "max gradient norm (0: no clipping)", check=at_least(0)),
    Setting("ema", 0.0, "score and keep a moving average of the weights with this decay per step (0: the last weights)",
            check=within(0, 1, note=", 0: no averaging")),
    Setting("freeze_word_embeddings", True, "the word-embedding table gets no gradient", applies=fine_tuning),
    Setting("freeze_layers", 0, "also freeze the embeddings and the bottom N transformer layers",
            check=at_least(0), applies=fine_tuning),
    Setting("compile", False, "torch.compile the encoder (pays on a GPU)", applies=fine_tuning),
    Setting("pooling", "cls", "what cross-encoded heads read: the pooled [CLS] or the mean of the tokens",
            choices=("cls", "mean"), applies=lambda shape: shape.pairs == "cross"),
    Setting("token_alignment", True, "the siamese paraphrase head also reads how well each question's tokens match the other's",
            applies=lambda shape: shape.pairs == "siamese" and "quora" in shape.tasks),
    # Settings of the steps that train nothing, in their own sections.
    Setting("cfimdb_max_length", 256, "CFIMDB's long reviews are cut to this many tokens (other tasks: max_length)",
            check=positive, applies=None, top_level=False, sections=("prepare",)),
    Setting("members", ["mtl", "mtl_embed", "specialist"], "the phases whose predictions the ensemble averages",
            check=_ensemble_members, applies=None, top_level=False, sections=("ensemble",)),
)


def _schema() -> dict[str, Setting]:
    declared: dict[str, Setting] = {}
    for setting in (*CORE, *surgery.SETTINGS, *smart.SETTINGS, *contrastive.SETTINGS, *losses.SETTINGS, *phases.SETTINGS):
        if setting.name in declared:
            raise RuntimeError(f"setting {setting.name} is declared twice")
        declared[setting.name] = setting
    return declared


SCHEMA: dict[str, Setting] = _schema()

# Steps that train nothing: their params sections and the settings they read.
STEPS: dict[str, tuple[str, ...]] = {
    "fetch": ("data",),
    "prepare": ("checkpoint", "max_length", "cfimdb_max_length"),
    "evaluate": ("device", "precision", "eval_batch_size"),
    "ensemble": ("members",),
}


def defaults() -> dict[str, Any]:
    """The embedded defaults tree: the top-level settings, then every step's and phase's section."""
    tree: dict[str, Any] = {s.name: copy.deepcopy(s.default) for s in SCHEMA.values() if s.top_level}
    for step in STEPS:
        tree[step] = {name: copy.deepcopy(SCHEMA[name].default) for name in STEPS[step] if step in SCHEMA[name].sections}
    for phase in phases.PHASES.values():
        tree[phase.name] = copy.deepcopy(phase.section)
    return tree


def known_sections() -> dict[str, dict]:
    """The sections params.yaml may hold, with their subsections."""
    known: dict[str, dict] = {step: {} for step in STEPS}
    for phase in phases.PHASES.values():
        node = known.setdefault(phase.name, {})
        runs = phase.runs()
        for depth in range(1, max(len(run.sections) for run in runs)):  # in order: baseline's modes, then its tasks
            for run in runs:
                if depth < len(run.sections):
                    node.setdefault(run.sections[depth].split(".", 1)[1], {})
    return {name: known[name] for name in ("fetch", "prepare", *phases.PHASES, "evaluate", "ensemble")}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats on top of PyYAML's YAML 1.1: there 2e-05 (no dot), which is what
    ``dvc exp run -S lr=2e-5`` writes into params.yaml, would be read as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """One value as params.yaml would hold it (``2e-4`` a float, ``true`` a bool), for overrides
    given as ``key=value`` text."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise UserError(f"cannot read the value {text!r} ({exc})".replace("\n", " ")) from exc


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` texts (``--set``, as ``dvc exp run -S`` takes them) as overrides; a dotted key
    (``specialist.sst.lr``) is not one run's setting but a params.yaml section's: refused."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected key=value, e.g. --set lr=2e-5")
        if "." in key:
            raise UserError(f"--set {key}: sections belong in params.yaml; --set overrides the run's own setting ({key.rsplit('.', 1)[1]}=...)")
        if key not in SCHEMA:
            raise UserError(f"--set {key}: unknown setting; known: {', '.join(SCHEMA)}")
        value = parse_value(text)
        if value is None:
            raise UserError(f"--set {key}: no value given (--set {key}=VALUE)")
        out[key] = value
    return out


def load(path: str | Path | None = None) -> dict[str, Any]:
    """The params tree a run resolves from: the embedded defaults, overlaid by ``path``.

    ``path`` None reads ./params.yaml if there is one; a path given that does not exist is an error."""
    if path is None:
        path = Path("params.yaml")
        if not path.is_file():
            return defaults()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found")
    loaded = read_params_file(path)
    _check_sections(loaded, known_sections(), path)
    tree = overlay(defaults(), loaded)
    check_tree(tree, loaded, path)
    return tree


def read_params_file(path: Path) -> dict[str, Any]:
    """A params file's mapping, its numbers read as ``dvc exp run -S`` writes them."""
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of params at the top level")
    return loaded


def overlay(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top``'s values over ``base``'s, section by section."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_sections(node: dict, known: dict, path: Path, prefix: str = "") -> None:
    for name, value in node.items():
        if not isinstance(value, dict):
            continue
        if name not in known:
            choices = ", ".join(prefix + k for k in known) if known else f"none ({prefix.rstrip('.')} takes params only)"
            raise UserError(f"{path}: unknown section {prefix}{name}; known: {choices}")
        _check_sections(value, known[name], path, f"{prefix}{name}.")


def section_values(tree: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The scalar settings a dotted section sets itself (its subsections left out)."""
    node: Any = tree
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if not isinstance(node, dict):
        raise UserError(f"params section {section!r} must be a mapping")
    return {k: v for k, v in node.items() if not isinstance(v, dict)}


def check_tree(tree: Mapping[str, Any], given: Mapping[str, Any], path: Path | str) -> None:
    """Every value of the tree known and valid where it stands; a value ``given`` in a section
    that no run reading that section uses is refused (it would change nothing)."""
    sections = known_sections()
    for key, value in tree.items():
        if isinstance(value, dict):
            continue
        if key in sections:
            raise UserError(f"{path}: section {key} must be a mapping, got {value!r}")
        setting = _known(key, f" ({path})")
        if not setting.top_level:
            where = ", ".join(setting.sections) if setting.sections else "a phase's"
            raise UserError(f"{path}: param {key} is set per section ({where}), not at the top level")
        _validate_in(path, setting, value)
    readers = _section_readers()
    for section, shapes in readers.items():
        for key, value in section_values(tree, section).items():
            setting = _known(key, f" ({path}, section {section})")
            _validate_in(path, setting, value, f" in section {section}")
            if setting.sections and section.split(".")[0] not in setting.sections:
                raise UserError(f"{path}: param {key} belongs in the section(s) {', '.join(setting.sections)}, not {section}")
            if section in STEPS and key in section_values(given, section) and key not in STEPS[section]:
                raise UserError(f"{path}: param {key} in section {section} is not read by the {section} step "
                                f"(it reads {', '.join(STEPS[section])})")
            if key in section_values(given, section) and shapes and not any(_applies(setting, s) for s in shapes):
                raise UserError(f"{path}: param {key} in section {section} is read by none of its runs ({setting.help})")


def _validate_in(path: Path | str, setting: Setting, value: Any, where: str = "") -> None:
    try:
        setting.validate(value, where)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def _section_readers() -> dict[str, list[RunShape]]:
    """Each section and the shapes of the runs that read it (none for a step's section)."""
    readers: dict[str, list[RunShape]] = {step: [] for step in STEPS}
    for phase in phases.PHASES.values():
        for run in phase.runs():
            for section in run.sections:
                readers.setdefault(section, []).append(run.shape)
    return readers


def _known(key: str, where: str = "") -> Setting:
    if key not in SCHEMA:
        raise UserError(f"unknown param {key}{where}; known: {', '.join(SCHEMA)}")
    return SCHEMA[key]


def _applies(setting: Setting, shape: RunShape) -> bool:
    return setting.applies is not None and setting.applies(shape)


class Settings(Mapping[str, Any]):
    """A run's resolved settings, read as ``s.lr`` or ``s["lr"]``. ``used`` names those the run
    reads (what its run.json and resume fingerprint record); ``sources`` says where each value
    came from (default, top level, a section, an override)."""

    def __init__(self, values: dict[str, Any], used: Iterable[str] | None = None, sources: dict[str, str] | None = None):
        self._values = dict(values)
        self.used = tuple(used) if used is not None else tuple(values)
        self.sources = sources or {}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def replace(self, **changes: Any) -> "Settings":
        for key, value in changes.items():
            _known(key).validate(value)
        return Settings({**self._values, **changes}, self.used, {**self.sources, **{k: "set" for k in changes}})

    def record(self) -> dict[str, Any]:
        """The settings this run uses, as run.json keeps them."""
        return {k: self._values[k] for k in self.used}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Settings":
        """A saved run's settings: what it recorded, over the schema's defaults for what it did not use."""
        values = {name: s.default for name, s in SCHEMA.items()}
        values.update(record)
        return cls(values, used=tuple(record))


def resolve(tree: Mapping[str, Any], sections: Iterable[str] = (), overrides: Mapping[str, Any] | None = None,
            shape: RunShape | None = None) -> Settings:
    """One run's settings: the top level, then each dotted section, then ``overrides`` (None
    values skipped: options not given). With ``shape``, ``used`` holds what that run reads."""
    values: dict[str, Any] = {name: copy.deepcopy(s.default) for name, s in SCHEMA.items()}
    sources = {name: "default" for name in values}
    for key, value in tree.items():
        if not isinstance(value, dict):
            values[_known(key).name] = value
            if value != SCHEMA[key].default:
                sources[key] = "params"
    for section in sections:
        for key, value in section_values(tree, section).items():
            values[_known(key, f" (section {section})").name] = value
            sources[key] = section
    for key, value in (overrides or {}).items():
        if value is not None:
            values[_known(key).name] = value
            sources[key] = "set"
    for key, value in values.items():
        SCHEMA[key].validate(value)
    used = None
    if shape is not None:
        used = [name for name, s in SCHEMA.items() if _applies(s, shape) and (s.when is None or s.when(values))]
    return Settings(values, used, sources)


def resolve_step(tree: Mapping[str, Any], step: str, overrides: Mapping[str, Any] | None = None) -> Settings:
    """A step that trains nothing (prepare, evaluate, ensemble): the top level, its section, the overrides."""
    settings = resolve(tree, (step,), overrides)
    return Settings(dict(settings), STEPS[step], settings.sources)


def unused_overrides(overrides: Mapping[str, Any], shapes: Iterable[RunShape]) -> list[str]:
    """The overrides given (not None) that none of ``shapes`` reads."""
    shapes = list(shapes)
    return [k for k, v in overrides.items() if v is not None and not any(_applies(SCHEMA[k], s) for s in shapes)]


def stage_params(tree: Mapping[str, Any], runs: Iterable["phases.Run"]) -> set[str]:
    """What a DVC stage training ``runs`` must list under ``params:``: each setting some run reads
    at the top level (not set by one of its sections), and the sections it reads (a section
    listed covers its subsections; an absent one cannot be listed, and holds nothing to read)."""
    listed: set[str] = set()
    for run in runs:
        shadowed = {k for section in run.sections for k in section_values(tree, section)}
        listed.update(
            name for name, s in SCHEMA.items() if s.top_level and _applies(s, run.shape) and name not in shadowed
        )
        for section in run.sections:
            parts = section.split(".")
            node: Any = tree
            for part in parts:
                node = node.get(part) if isinstance(node, dict) else None
            covered = any(".".join(parts[:i]) in listed for i in range(1, len(parts)))
            if isinstance(node, dict) and not covered and (node or len(parts) > 1):
                if len(parts) == 1 and not section_values(tree, section):
                    continue  # only subsections: each run lists its own
                listed.add(section)
    return listed


def describe(settings: Settings) -> list[str]:
    """``key: value  # meaning (source)`` for each setting a run uses."""
    width = max((len(k) for k in settings.used), default=0)
    lines = []
    for key in settings.used:
        value = yaml.safe_dump(settings[key], default_flow_style=True).strip().removesuffix("...").strip()
        source = settings.sources.get(key, "default")
        lines.append(f"{key + ':':<{width + 1}} {value:<10} # {SCHEMA[key].help} ({source})")
    return lines
