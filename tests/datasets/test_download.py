from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient

from spark_trainer.storage.http import parse_range
from tests.conftest import Account
from tests.datasets.helpers import md5, uploaded

DATA = os.urandom(3 * 1024 * 1024 + 11)


@pytest.fixture
def dataset(client: TestClient, alice: Account) -> str:
    uploaded(client, alice.headers, "weights", b"first version\n", filename="w.bin")
    dataset_id: str = uploaded(client, alice.headers, "weights", DATA, filename="w.bin")["id"]
    return dataset_id


def _url(dataset_id: str, version: str = "latest") -> str:
    return f"/api/datasets/{dataset_id}/versions/{version}/download"


def test_the_whole_file(client: TestClient, alice: Account, dataset: str) -> None:
    for version in ("latest", "v1.1.0"):
        response = client.get(_url(dataset, version), headers=alice.headers)
        assert response.status_code == 200
        assert response.content == DATA
        assert response.headers["content-length"] == str(len(DATA))
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["etag"] == f'"{md5(DATA)}"'
        assert response.headers["content-disposition"] == (
            "attachment; filename=\"w.bin\"; filename*=UTF-8''w.bin"
        )
    older = client.get(_url(dataset, "v1.0.0"), headers=alice.headers)
    assert older.content == b"first version\n"


def test_ranges(client: TestClient, alice: Account, dataset: str) -> None:
    size = len(DATA)
    cases = {
        "bytes=0-9": (0, 10),
        "bytes=1048570-2097160": (1048570, 2097161),
        "bytes=-10": (size - 10, size),
        f"bytes={size - 5}-": (size - 5, size),
        f"bytes=10-{size + 1000}": (10, size),
        f"bytes=-{size + 1000}": (0, size),
    }
    for header, (start, end) in cases.items():
        response = client.get(_url(dataset), headers={**alice.headers, "Range": header})
        assert response.status_code == 206, header
        assert response.content == DATA[start:end], header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["content-length"] == str(end - start)


@pytest.mark.parametrize("header", ["bytes=99999999-", "bytes=-0", "bytes=10-5"])
def test_unsatisfiable_ranges_are_416(
    client: TestClient, alice: Account, dataset: str, header: str
) -> None:
    response = client.get(_url(dataset), headers={**alice.headers, "Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"
    assert response.json() == {
        "error": "Range Not Satisfiable",
        "message": f"Range not satisfiable for {len(DATA)} bytes",
        "status": 416,
    }


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=-"])
def test_ranges_this_server_ignores_get_the_whole_file(
    client: TestClient, alice: Account, dataset: str, header: str
) -> None:
    response = client.get(_url(dataset), headers={**alice.headers, "Range": header})
    assert response.status_code == 200
    assert response.content == DATA


def test_an_unknown_version_is_404(client: TestClient, alice: Account, dataset: str) -> None:
    for version in ("v9.9.9", "1.0.0", "v1.0.0.0"):
        response = client.get(_url(dataset, version), headers=alice.headers)
        assert response.status_code == 404
        assert response.json()["message"] == f"Dataset '{dataset}' has no version '{version}'"


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        ("../../etc/passwd", "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"),
        (
            "C:\\Users\\me\\train.csv",
            "attachment; filename=\"train.csv\"; filename*=UTF-8''train.csv",
        ),
        # The test client, like browsers, sends a double quote in a file name as %22.
        (
            'quo"te; x=y.jsonl',
            'attachment; filename="quo_22te_x_y.jsonl"; '
            "filename*=UTF-8''quo%2522te%3B%20x%3Dy.jsonl",
        ),
        ("données.csv", "attachment; filename=\"donn_es.csv\"; filename*=UTF-8''donn%C3%A9es.csv"),
        ("..", "attachment; filename=\"named-v1.0.0\"; filename*=UTF-8''named-v1.0.0"),
    ],
)
def test_the_download_name_is_the_uploaded_one_made_safe(
    client: TestClient, alice: Account, filename: str, disposition: str
) -> None:
    dataset_id = uploaded(client, alice.headers, "named", b"content", filename=filename)["id"]
    response = client.get(_url(dataset_id), headers=alice.headers)
    assert response.headers["content-disposition"] == disposition


def test_an_empty_file_downloads_and_has_no_satisfiable_range(
    client: TestClient, alice: Account
) -> None:
    dataset_id = uploaded(client, alice.headers, "empty", b"", filename="empty.txt")["id"]
    response = client.get(_url(dataset_id), headers=alice.headers)
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-length"] == "0"
    ranged = client.get(_url(dataset_id), headers={**alice.headers, "Range": "bytes=-5"})
    assert ranged.status_code == 416


def test_parse_range() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-0", 100) == (0, 1)
    assert parse_range("bytes=99-", 100) == (99, 100)
    assert parse_range(" bytes = 5 - 9 ", 100) == (5, 10)
    assert parse_range("bytes=-100", 100) == (0, 100)
