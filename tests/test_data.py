"""The data layer against small files that reproduce the real CS224N defects, and the real files."""

from __future__ import annotations

import csv
import functools
import http.server
import socket
import threading
from pathlib import Path
from typing import Iterator
from unittest import mock

import pytest

from optiminbert.data import (
    SPLITS,
    TASKS,
    Example,
    Skipped,
    Split,
    load_split,
    load_task,
    fetch,
    skip_report,
)
from optiminbert.errors import UserError

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/cs224n"

SST_HEADER = "\tid\tsentence\tsentiment\n"
QUORA_HEADER = "\tid\tsentence1\tsentence2\tis_duplicate\n"
STS_HEADER = "\tid\tsentence1\tsentence2\tsimilarity\n"
# The SST and CFIMDB test-student files really start like this: an extra leading column.
WEIRD_TEST_HEADER = "0\t\tid\tsentence\n"


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_sst_train_defects_are_skipped_with_reasons(tmp_path: Path) -> None:
    rows = (
        "0\ta1\t It 's a lovely film .\t3\n"
        '1\ta2\t"a quoted\tfield with a tab"\t4\n'
        "2\ta3\tFun &amp; games<br />really< br />so<br / >  much\t0\n"
        "3\ta4\t   \t2\n"
        "4\ta5\tNo label here\t\n"
        "5\ta6\tWord label\tx\n"
        "6\ta7\tToo high\t7\n"
        "7\ta8\tBetween classes\t2.5\n"
        "8\ta1\tSame id again\t1\n"
        "9\ta10\tonly three fields\n"
        "10\ta11\tNot a number either\tnan\n"
        "11\ta12\tClass as float\t1.0\n"
    )
    bad_bytes = b"12\ta13\tcaf\xe9 latin-1\t1\n"
    write(tmp_path, "ids-sst-train.csv", (SST_HEADER + rows).encode() + bad_bytes)

    split = load_split(tmp_path, "sst", "train")

    assert split.task is TASKS["sst"] and split.split == "train"
    assert split.examples == [
        Example("a1", ("It 's a lovely film .",), 3.0),
        Example("a2", ("a quoted field with a tab",), 4.0),
        Example("a3", ("Fun & games really so much",), 0.0),
        Example("a12", ("Class as float",), 1.0),
    ]
    file = "ids-sst-train.csv"
    assert split.skipped == [
        Skipped(file, 4, "missing sentence"),
        Skipped(file, 5, "missing label"),
        Skipped(file, 6, "label 'x' is not a number"),
        Skipped(file, 7, "label 7 out of range 0-4"),
        Skipped(file, 8, "label 2.5 is not a whole number"),
        Skipped(file, 9, "duplicate id (first seen in row 1)"),
        Skipped(file, 10, "3 fields, expected 4"),
        Skipped(file, 11, "label 'nan' is not a number"),
        Skipped(file, 13, "not valid UTF-8"),
    ]


def test_quora_quoting_artefacts_and_missing_fields(tmp_path: Path) -> None:
    # Rows copied from the real quora files: a doubly quoted field, and a field whose
    # opening quote is never closed, which must not swallow the rows after it.
    write(
        tmp_path,
        "quora-dev.csv",
        QUORA_HEADER
        + '1\tq1\t"""What does """"turning the ship slowly"""" mean?"""\tA plain question?\t0.0\n'
        + '2\tq2\tAny idea of dresses?\t"""Where can I find a dress?"\t\n'
        + "3\tq3\tIs this kept?\tYes it is.\t1.0\n"
        + "4\tq4\tHalf a duplicate?\tNo.\t0.5\n"
        + "5\tq5\tTwo?\tNo.\t2\n",
    )
    write(
        tmp_path,
        "quora-test-student.csv",
        QUORA_HEADER.replace("\tis_duplicate", "") + '1\tt1\t"""Only one question?"\t\n2\tt2\tOne?\tTwo?\n',
    )

    dev = load_split(tmp_path, "quora", "dev")
    test = load_split(tmp_path, "quora", "test")

    assert dev.examples == [
        Example("q1", ('"What does ""turning the ship slowly"" mean?"', "A plain question?"), 0.0),
        Example("q3", ("Is this kept?", "Yes it is."), 1.0),
    ]
    assert dev.skipped == [
        Skipped("quora-dev.csv", 2, "missing label"),
        Skipped("quora-dev.csv", 4, "label 0.5 is not a whole number"),
        Skipped("quora-dev.csv", 5, "label 2 out of range 0-1"),
    ]
    assert test.examples == [Example("t2", ("One?", "Two?"), None)]
    assert test.skipped == [Skipped("quora-test-student.csv", 1, "missing sentence2")]


def test_sts_labels_are_floats_in_0_to_5(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sts-train.csv",
        STS_HEADER
        + "0\ts1\tA dog runs.\tA dog is running.\t4.6\n"
        + "1\ts2\tA cat.\tThe stock fell &gt; 2%.\t0\n"
        + "2\ts3\tToo similar.\tToo similar.\t5.5\n"
        + "3\ts4\tNegative.\tNegative.\t-0.1\n"
        + "4\ts5\t\tNo first sentence.\t1.0\n",
    )

    split = load_split(tmp_path, "sts", "train")

    assert split.examples == [
        Example("s1", ("A dog runs.", "A dog is running."), 4.6),
        Example("s2", ("A cat.", "The stock fell > 2%."), 0.0),
    ]
    assert split.skipped == [
        Skipped("sts-train.csv", 3, "label 5.5 out of range 0-5"),
        Skipped("sts-train.csv", 4, "label -0.1 out of range 0-5"),
        Skipped("sts-train.csv", 5, "missing sentence1"),
    ]


@pytest.mark.parametrize("task", ["sst", "cfimdb"])
def test_weird_test_student_header_is_read_by_column_name(tmp_path: Path, task: str) -> None:
    name = TASKS[task].filename("test")
    write(tmp_path, name, WEIRD_TEST_HEADER + "1\t0.0\tid0\t A first text .\n2\t1.0\tid1\t A second <br /> text .\n")

    split = load_split(tmp_path, task, "test")

    assert split.examples == [
        Example("id0", ("A first text .",), None),
        Example("id1", ("A second text .",), None),
    ]
    assert split.skipped == []


def test_cfimdb_labels_are_binary_classes(tmp_path: Path) -> None:
    write(tmp_path, "ids-cfimdb-dev.csv", SST_HEADER + "0\tc1\tGood .\t1\n1\tc2\tBad .\t0\n2\tc3\tHuh .\t2\n")

    split = load_split(tmp_path, "cfimdb", "dev")

    assert [e.label for e in split.examples] == [1.0, 0.0]
    assert split.skipped == [Skipped("ids-cfimdb-dev.csv", 3, "label 2 out of range 0-1")]


def user_error(call, *args) -> str:
    with pytest.raises(UserError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_file_names_it_and_the_data_source(tmp_path: Path) -> None:
    message = user_error(load_split, tmp_path, "sst", "dev")
    assert "ids-sst-dev.csv" in message and "not found" in message and "data source" in message


def test_empty_file(tmp_path: Path) -> None:
    write(tmp_path, "sts-dev.csv", "")
    message = user_error(load_split, tmp_path, "sts", "dev")
    assert "sts-dev.csv" in message and "empty" in message


def test_header_without_a_required_column_lists_expected_and_found(tmp_path: Path) -> None:
    write(tmp_path, "sts-dev.csv", "\tid\tsentence1\tsentence2\tscore\n0\ts1\ta\tb\t1.0\n")
    message = user_error(load_split, tmp_path, "sts", "dev")
    assert "sts-dev.csv" in message and "lacks column similarity" in message
    assert "expected id, sentence1, sentence2, similarity" in message and "'score'" in message


def test_file_where_every_row_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, "ids-sst-dev.csv", SST_HEADER + "0\ta\tText\t9\n1\tb\tText\t9\n")
    message = user_error(load_split, tmp_path, "sst", "dev")
    assert "ids-sst-dev.csv" in message and "all 2 rows were skipped" in message
    assert "label 9 out of range 0-4" in message


def test_file_with_only_a_header(tmp_path: Path) -> None:
    write(tmp_path, "ids-sst-dev.csv", SST_HEADER)
    message = user_error(load_split, tmp_path, "sst", "dev")
    assert "ids-sst-dev.csv" in message and "no data rows" in message


def test_an_unclosed_quote_is_blamed_on_its_own_row_not_the_rows_it_swallowed(tmp_path: Path) -> None:
    write(tmp_path, "ids-sst-dev.csv", SST_HEADER + "0\ta\tgood\t1\n1\tb\t\"unclosed\t2\n2\tc\tfine\t3\n3\td\tlast\t4\n")
    split = load_split(tmp_path, "sst", "dev")
    assert [ex.id for ex in split.examples] == ["a"]
    (skip,) = split.skipped
    assert skip.row == 2 and skip.reason == "a quote opened on line 3 is not closed until line 5, so those lines read as one row"


def test_a_text_over_the_length_limit_is_skipped_like_any_bad_row(tmp_path: Path) -> None:
    """Past the csv module's own field limit (131,072 characters), which once stopped the file."""
    write(tmp_path, "ids-sst-dev.csv", SST_HEADER + f"0\ta\t{'word ' * 30_000}\t1\n1\tb\tfine\t2\n")
    split = load_split(tmp_path, "sst", "dev")
    assert [ex.id for ex in split.examples] == ["b"]
    assert split.skipped[0].row == 1 and "a text of 149,999 characters, over the 100,000" in split.skipped[0].reason
    assert csv.field_size_limit() == 131072  # the module-wide limit is left as it was


def test_a_row_the_csv_module_cannot_split_is_named_by_its_line(tmp_path: Path) -> None:
    write(tmp_path, "ids-sst-dev.csv", SST_HEADER + "0\ta\tgood\t1\n")
    real_reader = csv.reader

    def failing_after_the_header(handle, **kwargs):
        reader = real_reader(handle, **kwargs)

        class Failing:
            line_num = property(lambda self: reader.line_num)

            def __next__(self):
                if reader.line_num >= 1:
                    raise csv.Error("injected")
                return next(reader)

        return Failing()

    with mock.patch("csv.reader", failing_after_the_header):
        message = user_error(load_split, tmp_path, "sst", "dev")
    assert message == "ids-sst-dev.csv line 2: unreadable CSV (injected)"


def test_unknown_task_and_split_list_the_valid_names(tmp_path: Path) -> None:
    assert "sst, cfimdb, quora, sts" in user_error(load_split, tmp_path, "imdb", "dev")
    assert "train, dev, test" in user_error(load_split, tmp_path, "sst", "validation")


def test_load_task_reads_all_three_splits(tmp_path: Path) -> None:
    write(tmp_path, "ids-cfimdb-train.csv", SST_HEADER + "0\tc1\tGood .\t1\n")
    write(tmp_path, "ids-cfimdb-dev.csv", SST_HEADER + "0\tc2\tBad .\t0\n")
    write(tmp_path, "ids-cfimdb-test-student.csv", WEIRD_TEST_HEADER + "1\t0.0\tc3\tSo so .\n")

    splits = load_task(tmp_path, "cfimdb")

    assert list(splits) == list(SPLITS)
    assert [splits[s].examples[0].id for s in SPLITS] == ["c1", "c2", "c3"]


def test_skip_report() -> None:
    spec = TASKS["quora"]
    clean = Split(spec, "train", [], [])
    dev = Split(spec, "dev", [], [Skipped("quora-dev.csv", row, "missing label") for row in (3, 8, 9)])

    assert skip_report([clean]) == ""
    assert skip_report([clean, dev], max_rows=2) == (
        "quora-dev.csv: 3 rows skipped\n"
        "  quora-dev.csv row 3: missing label\n"
        "  quora-dev.csv row 8: missing label\n"
        "  ... and 1 more"
    )


def task_files(directory: Path) -> None:
    """One good row in every task file, as the CS224N folder holds them."""
    directory.mkdir(parents=True, exist_ok=True)
    for spec in TASKS.values():
        for split in SPLITS:
            header = "\tid\t" + "\t".join(spec.text_columns) + ("" if split == "test" else f"\t{spec.label_column}")
            row = "0\tx\t" + "\t".join("text" for _ in spec.text_columns) + ("" if split == "test" else "\t1")
            write(directory, spec.filename(split), f"{header}\n{row}\n")


ALL_FILES = sorted(spec.filename(split) for spec in TASKS.values() for split in SPLITS)


def test_a_local_source_is_copied_whole_or_refused(tmp_path: Path) -> None:
    task_files(tmp_path / "source")
    fetch(tmp_path / "source", tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ALL_FILES
    assert "nowhere" in user_error(fetch, tmp_path / "nowhere", tmp_path / "other")
    (tmp_path / "source" / "ids-sst-dev.csv").unlink()
    message = user_error(fetch, tmp_path / "source", tmp_path / "other")
    assert message.startswith(f"ids-sst-dev.csv not found in {tmp_path / 'source'}: point the data source")
    assert not (tmp_path / "other").exists()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over a folder, standing in for the CS224N repository."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/data"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_source_is_downloaded_whole(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, url = served
    task_files(root / "data")
    for source in (url, url + "/"):
        fetch(source, tmp_path / "raw")
        assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ALL_FILES
        assert load_split(tmp_path / "raw", "quora", "dev").examples == [Example("x", ("text", "text"), 1.0)]


def test_download_failure_names_the_url(tmp_path: Path, served: tuple[Path, str]) -> None:
    _, url = served
    message = user_error(fetch, url, tmp_path / "raw")
    assert f"{url}/ids-sst-train.csv" in message and "404" in message
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]  # no partial copy, no temporary


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data/"
    message = user_error(fetch, url, tmp_path / "raw")
    assert f"{url}ids-sst-train.csv" in message


REAL_ROWS = {
    "sst": (8544, 1101, 2210),
    "cfimdb": (1707, 245, 488),
    "quora": (14158, 3004, 3052),
    "sts": (6040, 863, 1725),
}


def test_real_cs224n_files() -> None:
    if not REAL_DATA.is_dir():
        pytest.skip(f"no real data at {REAL_DATA}")
    skipped = []
    for task, counts in REAL_ROWS.items():
        splits = load_task(REAL_DATA, task)
        for split_name, rows in zip(SPLITS, counts):
            split = splits[split_name]
            assert len(split.examples) + len(split.skipped) == rows
            assert all(e.texts and all(e.texts) for e in split.examples)
            assert all((e.label is None) == (split_name == "test") for e in split.examples)
            skipped += split.skipped
    # The only defective rows: one Quora dev pair without a label, one test pair without sentence2.
    assert skipped == [
        Skipped("quora-dev.csv", 382, "missing label"),
        Skipped("quora-test-student.csv", 2187, "missing sentence2"),
    ]
    sst_test = load_split(REAL_DATA, "sst", "test")
    assert sst_test.examples[0] == Example("b7573736a6ddf7be102b7fee0", ("Effective but too-tepid biopic",), None)
    cfimdb_test = load_split(REAL_DATA, "cfimdb", "test")
    assert cfimdb_test.examples[0].id == "c916d7750936543cf3a109be1"
