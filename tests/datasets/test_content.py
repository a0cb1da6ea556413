from __future__ import annotations

import json
import os
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spark_trainer.datasets.content import HEAD_BYTES, ContentInspector
from spark_trainer.models import DatasetFormat
from tests.conftest import Account
from tests.datasets.helpers import uploaded


def _latest(
    client: TestClient, account: Account, name: str, data: bytes, filename: str
) -> dict[str, Any]:
    body = uploaded(client, account.headers, name, data, filename=filename)
    detail = client.get(f"/api/datasets/{body['id']}", headers=account.headers).json()
    latest: dict[str, Any] = detail["latest_version"]
    return latest


def test_jsonl_records_and_preview(client: TestClient, alice: Account) -> None:
    records = [{"id": i, "text": f"example {i}", "tags": ["a", "b"]} for i in range(1000)]
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    latest = _latest(client, alice, "instructions", data, "train.jsonl")
    assert latest["format"] == "jsonl"
    assert latest["record_count"] == 1000
    assert latest["preview"] == records[:5]


def test_csv_rows_after_the_header_and_preview(client: TestClient, alice: Account) -> None:
    rows = ["text,label"] + [f'"sentence, number {i}",{i % 2}' for i in range(300)]
    data = ("\r\n".join(rows) + "\r\n").encode()
    latest = _latest(client, alice, "sentiment", data, "reviews.csv")
    assert latest["format"] == "csv"
    assert latest["record_count"] == 300
    assert latest["preview"][:2] == [
        {"text": "sentence, number 0", "label": "0"},
        {"text": "sentence, number 1", "label": "1"},
    ]
    assert len(latest["preview"]) == 5


def test_a_last_line_without_newline_still_counts(client: TestClient, alice: Account) -> None:
    latest = _latest(client, alice, "no-eol", b'{"a": 1}\n{"a": 2}', "x.jsonl")
    assert latest["record_count"] == 2
    assert latest["preview"] == [{"a": 1}]  # only lines known to be complete are shown


def test_the_preview_of_a_large_file_is_bounded(client: TestClient, alice: Account) -> None:
    big_record = json.dumps({"text": "y" * (HEAD_BYTES // 3)}) + "\n"
    data = (big_record * 40).encode()
    latest = _latest(client, alice, "long-lines", data, "long.jsonl")
    assert latest["record_count"] == 40
    assert len(json.dumps(latest["preview"])) <= HEAD_BYTES
    assert 1 <= len(latest["preview"]) < 5


@pytest.mark.parametrize(
    ("filename", "data", "fmt", "count"),
    [
        ("notes.txt", b"one\ntwo\nthree\n", "text", 3),
        ("data.json", b'{"rows": [1, 2, 3]}', "json", None),
        ("table.parquet", b"PAR1" + os.urandom(100) + b"PAR1", "parquet", None),
        ("blob.bin", os.urandom(5000), "binary", None),
        ("no-extension", b'{"a": 1}\n{"a": 2}\n', "jsonl", 2),
        ("no-extension", b"PAR1" + b"\x00" * 10, "parquet", None),
        ("no-extension", b"plain words\nmore words\n", "text", 2),
        ("no-extension", b"[1, 2, 3]", "json", None),
        ("no-extension", b"\x00\x01\x02binary", "binary", None),
        ("no-extension", b"\x00" + os.urandom(100_000), "binary", None),
        ("no-extension", b"word\n" * 10_000, "text", 10_000),
    ],
)
def test_formats(
    client: TestClient,
    alice: Account,
    filename: str,
    data: bytes,
    fmt: str,
    count: int | None,
) -> None:
    latest = _latest(client, alice, "sniffed", data, filename)
    assert (latest["format"], latest["record_count"]) == (fmt, count)
    if fmt not in ("jsonl", "csv", "tsv"):
        assert latest["preview"] is None


def test_the_inspector_takes_slices_of_chunks() -> None:
    inspector = ContentInspector("x.jsonl")
    chunk = b"garbage" + b'{"a": 1}\n{"a": 2}\n' + b"garbage"
    inspector.feed(chunk, 7, len(chunk) - 7)
    summary = inspector.summary()
    assert (summary.format, summary.record_count) == (DatasetFormat.JSONL, 2)
    assert summary.preview == [{"a": 1}, {"a": 2}]


def test_a_utf8_character_cut_at_the_head_end_does_not_make_text_binary() -> None:
    inspector = ContentInspector(None)
    text = ("a" + "é" * HEAD_BYTES).encode()
    assert text[HEAD_BYTES - 1 : HEAD_BYTES + 1] == "é".encode()  # the head ends inside it
    inspector.feed(text, 0, HEAD_BYTES + 1)
    inspector.feed(text, HEAD_BYTES + 1, len(text))
    assert inspector.summary().format == DatasetFormat.TEXT
