"""The four CS224N default-final-project tasks, read from their tab-separated files.

The files are real-world data with real-world defects, so loading never crashes on a bad
row: the row is skipped and recorded, and only a file that is unusable as a whole (missing,
empty, wrong header, nothing left after skipping) stops the run with a ``UserError``.
"""

from __future__ import annotations

import csv
import html
import http.client
import math
import re
import shutil
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from optiminbert.atomic import atomic_dir, atomic_path
from optiminbert.errors import UserError
from optiminbert.kinds import KINDS, TaskKind

CS224N_DATA_URL = "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data/"

SPLITS = ("train", "dev", "test")
# Far beyond any sentence or review of these tasks (CFIMDB's longest is about 7,000 characters):
# a longer text is a broken file (a quote left open swallows the lines after it) and is skipped.
MAX_TEXT_CHARS = 100_000
_SPLIT_SUFFIX = {"train": "train", "dev": "dev", "test": "test-student"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    file_stem: str
    text_columns: tuple[str, ...]
    label_column: str
    kind: TaskKind
    num_classes: int  # 1 for binary and regression: the model has one output
    class_names: tuple[str, ...] = ()  # what a predicted class means, for people

    def filename(self, split: str) -> str:
        _check_name("split", split, SPLITS)
        return f"{self.file_stem}-{_SPLIT_SUFFIX[split]}.csv"


TASKS: dict[str, TaskSpec] = {
    "sst": TaskSpec("sst", "ids-sst", ("sentence",), "sentiment", KINDS["classification"], 5,
                    ("very negative", "negative", "neutral", "positive", "very positive")),
    "cfimdb": TaskSpec("cfimdb", "ids-cfimdb", ("sentence",), "sentiment", KINDS["classification"], 2, ("negative", "positive")),
    "quora": TaskSpec("quora", "quora", ("sentence1", "sentence2"), "is_duplicate", KINDS["binary"], 1),
    "sts": TaskSpec("sts", "sts", ("sentence1", "sentence2"), "similarity", KINDS["regression"], 1),
}


@dataclass(frozen=True)
class Example:
    id: str
    texts: tuple[str, ...]
    label: float | None  # None in test files, which carry no labels


@dataclass(frozen=True)
class Skipped:
    file: str
    # The data row as a user counts it: the header is row 0 and the first data row is
    # row 1, so for a file without line breaks inside quoted fields, row N is line N + 1.
    row: int
    reason: str


@dataclass
class Split:
    task: TaskSpec
    split: str
    examples: list[Example]
    skipped: list[Skipped]


def load_task(data_dir: str | Path, task: str) -> dict[str, Split]:
    return {split: load_split(data_dir, task, split) for split in SPLITS}


def load_split(data_dir: str | Path, task: str, split: str) -> Split:
    """Read one task file, keeping good rows and recording every skipped one with its reason."""
    _check_name("task", task, TASKS)
    spec = TASKS[task]
    name = spec.filename(split)
    path = Path(data_dir) / name
    if not path.is_file():
        raise UserError(
            f"{name} not found in {Path(data_dir)}: point the data source at a folder with the "
            f"CS224N task files, or at a URL of them such as {CS224N_DATA_URL}"
        )
    has_label = split != "test"
    examples: list[Example] = []
    skipped: list[Skipped] = []
    # surrogateescape keeps a bad byte from failing the whole file: it surfaces as a lone
    # surrogate in its row, which is then skipped. utf-8-sig drops a spreadsheet's BOM.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle, _field_limit():
        reader = csv.reader(handle, delimiter="\t")
        header = _next_row(reader, name)
        if header is None:
            raise UserError(f"{name} is empty (no header line): replace it with the CS224N file")
        columns = _column_indices(name, header, spec, has_label)
        first_row_of_id: dict[str, int] = {}
        row_number = 0
        while True:
            first_line = reader.line_num + 1
            row = _next_row(reader, name)
            if row is None:
                break
            row_number += 1
            if reader.line_num > first_line and any("\n" in cell or "\r" in cell for cell in row):
                # No text of these tasks spans lines: a quote left open swallowed the lines after it.
                outcome = f"a quote opened on line {first_line} is not closed until line {reader.line_num}, so those lines read as one row"
            else:
                outcome = _parse_row(row, len(header), columns, spec, has_label)
            if isinstance(outcome, Example) and outcome.id in first_row_of_id:
                outcome = f"duplicate id (first seen in row {first_row_of_id[outcome.id]})"
            if isinstance(outcome, str):
                skipped.append(Skipped(name, row_number, outcome))
            else:
                first_row_of_id[outcome.id] = row_number
                examples.append(outcome)
    if not examples:
        if not skipped:
            raise UserError(f"{name} has a header but no data rows: replace it with the CS224N file")
        first = skipped[0]
        raise UserError(
            f"{name}: all {len(skipped)} rows were skipped (row {first.row}: {first.reason}); "
            f"check that it is the {split} file of task {task}"
        )
    return Split(spec, split, examples, skipped)


@contextmanager
def _field_limit() -> Iterator[None]:
    """Let the csv module read a field of any length (its default limit, 131,072 characters,
    would stop the whole file at one long text, which is skipped as a row instead); the
    module-wide limit is restored after."""
    previous = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _next_row(reader, name: str) -> list[str] | None:
    """The next row, or None at the end; a row the csv module cannot split is named by the line
    it starts on (a row may run over several lines, and the later ones are not to blame)."""
    starts_after = reader.line_num
    try:
        return next(reader, None)
    except csv.Error as error:
        raise UserError(f"{name} line {starts_after + 1}: unreadable CSV ({error})") from None


def _column_indices(name: str, header: list[str], spec: TaskSpec, has_label: bool) -> dict[str, int]:
    """Map each needed column to its position, by name: the test-student files of SST and
    CFIMDB have an extra leading column, so positions differ between splits."""
    required = ("id", *spec.text_columns, *((spec.label_column,) if has_label else ()))
    found = [cell.strip() for cell in header]
    missing = [column for column in required if column not in found]
    if missing:
        raise UserError(
            f"{name}: header lacks column {', '.join(missing)} (expected {', '.join(required)}; "
            f"found {', '.join(repr(cell) for cell in found)}): is it a CS224N {spec.name} file?"
        )
    return {column: found.index(column) for column in required}


_SURROGATE = re.compile("[\udc80-\udcff]")
# CFIMDB's tokenizer left line breaks as "<br />", "< br />" and "<br / >".
_LINE_BREAK_TAG = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)


def _parse_row(
    row: list[str], width: int, columns: dict[str, int], spec: TaskSpec, has_label: bool
) -> Example | str:
    """The row's example, or the reason it is skipped."""
    if any(_SURROGATE.search(cell) for cell in row):
        return "not valid UTF-8"
    # A row of another width is misaligned with the header (a stray tab, a cut line), so no
    # column in it can be trusted even where one happens to parse.
    if len(row) != width:
        return f"{len(row)} fields, expected {width}"
    example_id = row[columns["id"]].strip()
    if not example_id:
        return "missing id"
    texts = tuple(clean_text(row[columns[column]]) for column in spec.text_columns)
    longest = max(len(t) for t in texts)
    if longest > MAX_TEXT_CHARS:
        return f"a text of {longest:,} characters, over the {MAX_TEXT_CHARS:,} this tool reads"
    for column, text in zip(spec.text_columns, texts):
        if not text:
            return f"missing {column}"
    if not has_label:
        return Example(example_id, texts, None)
    label = _parse_label(row[columns[spec.label_column]].strip(), spec)
    return label if isinstance(label, str) else Example(example_id, texts, label)


def _parse_label(raw: str, spec: TaskSpec) -> float | str:
    """The label as a float, or the reason it is unusable."""
    if not raw:
        return "missing label"
    try:
        value = float(raw)
    except ValueError:
        return f"label {raw!r} is not a number"
    if math.isnan(value):
        return f"label {raw!r} is not a number"
    low, high, whole = spec.kind.label_range(spec.num_classes)
    # A class label arrives as "3" or "1.0"; anything between classes is corrupt.
    if whole and math.isfinite(value) and not value.is_integer():
        return f"label {raw} is not a whole number"
    if not low <= value <= high:
        return f"label {raw} out of range {low:g}-{high:g}"
    return value


def clean_text(text: str) -> str:
    """Undo the HTML escapes and line-break tags of the scraped reviews and normalise spacing,
    so the tokenizer sees the text a reader would."""
    text = _LINE_BREAK_TAG.sub(" ", html.unescape(text))
    return " ".join(text.split())


def skip_report(splits: Iterable[Split], max_rows: int = 5) -> str:
    """Skipped rows per file, with up to ``max_rows`` examples each; "" when nothing was skipped."""
    lines: list[str] = []
    for split in splits:
        if not split.skipped:
            continue
        count = len(split.skipped)
        lines.append(f"{split.task.filename(split.split)}: {count} row{'s' if count != 1 else ''} skipped")
        lines.extend(f"  {s.file} row {s.row}: {s.reason}" for s in split.skipped[:max_rows])
        if count > max_rows:
            lines.append(f"  ... and {count - max_rows} more")
    return "\n".join(lines)


def is_url(source: str | Path) -> bool:
    return str(source).startswith(("http://", "https://"))


def local_source(source: str | Path) -> Path:
    directory = Path(source)
    if not directory.is_dir():
        raise UserError(f"data source {directory} is not a directory (give a folder of CS224N files or a URL)")
    return directory


def readable_source(source: str | Path, download_to: str | Path) -> Path:
    """A folder the task files can be read from: a local source as it is, a URL's files
    downloaded into ``download_to`` first (as the fetch stage does)."""
    if is_url(source):
        fetch(source, download_to)
        return Path(download_to)
    return local_source(source)


def fetch(source: str | Path, destination: str | Path) -> None:
    """Every task file from ``source`` (a local folder, or the base URL of one) into
    ``destination``, which is written as a whole. The stages read this copy inside the project:
    DVC runs queued and temporary experiments in copies of the project, where a path outside it
    does not exist."""
    names = [spec.filename(split) for spec in TASKS.values() for split in SPLITS]
    text = str(source)
    remote = is_url(source)
    if not remote:
        directory = local_source(source)
        missing = [name for name in names if not (directory / name).is_file()]
        if missing:
            raise UserError(
                f"{missing[0]} not found in {directory}: point the data source at a folder with the CS224N task "
                f"files, or at a URL of them such as {CS224N_DATA_URL}"
            )
    with atomic_dir(destination) as tmp:
        if remote:
            base = text if text.endswith("/") else text + "/"
            # stderr, so a command's own output on stdout stays clean.
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, console=Console(stderr=True)) as progress:
                for name in names:
                    _download(base + name, tmp / name, progress)
        else:
            for name in names:
                shutil.copyfile(directory / name, tmp / name)


def _download(url: str, destination: Path, progress: Progress) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(destination) as tmp:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            bar = progress.add_task(destination.name, total=total)
            received = 0
            with tmp.open("wb") as out:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    received += len(chunk)
                    progress.update(bar, advance=len(chunk))
            # A dropped connection can end the stream early without an error; a short
            # file must not land in the cache, where it would be trusted from then on.
            if total is not None and received != total:
                raise UserError(f"cannot download {url}: got {received} of {total} bytes; try again")
    except (OSError, http.client.HTTPException) as error:
        raise UserError(f"cannot download {url}: {error}; check the URL and the network") from None


def _check_name(kind: str, name: str, valid: Iterable[str]) -> None:
    valid = list(valid)
    if name not in valid:
        raise UserError(f"unknown {kind} {name!r}: valid {kind}s are {', '.join(valid)}")
