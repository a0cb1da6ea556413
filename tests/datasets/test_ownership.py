from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from spark_trainer.datasets import service
from spark_trainer.errors import NotFound
from spark_trainer.models import User
from tests.conftest import Account
from tests.datasets.helpers import uploaded


def test_another_user_sees_none_of_it(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    dataset_id = uploaded(client, alice.headers, "private", b'{"secret": 1}\n')["id"]
    for path in (
        f"/api/datasets/{dataset_id}",
        f"/api/datasets/{dataset_id}/versions",
        f"/api/datasets/{dataset_id}/versions/latest/download",
        f"/api/datasets/{dataset_id}/versions/v1.0.0/download",
    ):
        response = client.get(path, headers=bob.headers)
        assert response.status_code == 404, path
        assert response.json() == {
            "error": "Not Found",
            "message": f"Dataset '{dataset_id}' not found",
            "status": 404,
        }
    # Exactly what a dataset that does not exist looks like.
    missing = client.get("/api/datasets/ds-0000000000000000", headers=bob.headers)
    assert missing.json()["message"] == "Dataset 'ds-0000000000000000' not found"
    assert client.get("/api/datasets", headers=bob.headers).json()["total"] == 0
    assert client.get("/api/datasets?name=private", headers=bob.headers).json()["items"] == []

    assert client.get(f"/api/datasets/{dataset_id}", headers=admin.headers).status_code == 200
    download = client.get(
        f"/api/datasets/{dataset_id}/versions/latest/download", headers=admin.headers
    )
    assert download.content == b'{"secret": 1}\n'


def test_names_are_unique_per_owner(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = uploaded(client, alice.headers, "shared-name", b"alice's\n")
    bobs = uploaded(client, bob.headers, "shared-name", b"bob's\n")
    assert bobs["id"] != alices["id"]
    assert bobs["latest_version"]["version"] == "v1.0.0"
    assert bobs["owner_id"] == bob.user.id
    # Bob uploading Alice's bytes under her name still makes his own dataset.
    again = uploaded(client, bob.headers, "other", b"alice's\n")
    assert again["owner_id"] == bob.user.id

    everyone = client.get("/api/datasets?name=shared-name", headers=admin.headers).json()
    assert everyone["total"] == 2
    assert client.get("/api/datasets?name=shared-name", headers=alice.headers).json()["total"] == 1


def test_list_filter_paging_and_order(client: TestClient, alice: Account) -> None:
    ids = [uploaded(client, alice.headers, f"set-{i}", f"{i}\n".encode())["id"] for i in range(5)]
    page = client.get("/api/datasets?limit=2&offset=1", headers=alice.headers).json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [d["id"] for d in page["items"]] == [ids[3], ids[2]]  # newest first
    only = client.get("/api/datasets?name=set-2", headers=alice.headers).json()
    assert [d["id"] for d in only["items"]] == [ids[2]]
    bad = client.get("/api/datasets?limit=0", headers=alice.headers)
    assert bad.status_code == 400


def test_resolve_version_for_the_job_engine(
    client: TestClient, ctx: AppContext, alice: Account, bob: Account
) -> None:
    dataset_id = uploaded(client, alice.headers, "for-jobs", b"v1\n")["id"]
    uploaded(client, alice.headers, "for-jobs", b"v2\n")
    with ctx.session_factory() as session:
        owner = session.get(User, alice.user.id)
        other = session.get(User, bob.user.id)
        assert owner is not None and other is not None
        for asked, expected in ((None, "v1.1.0"), ("latest", "v1.1.0"), ("v1.0.0", "v1.0.0")):
            found = service.resolve_version(session, owner, dataset_id, asked)
            assert found.version == expected
            assert found.id.startswith("dsv-")
            path = ctx.artifacts.local_path(found.hash)
            assert path is not None
            assert path.read_bytes() == (b"v2\n" if expected == "v1.1.0" else b"v1\n")
        with pytest.raises(NotFound):
            service.resolve_version(session, other, dataset_id, None)
        with pytest.raises(NotFound):
            service.resolve_version(session, owner, dataset_id, "v3.0.0")
