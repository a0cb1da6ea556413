from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spark_trainer.storage.base import ArtifactStore
from spark_trainer.storage.local import LocalArtifactStore
from tests.storage.conformance import ArtifactStoreConformance, md5


class TestLocalArtifactStore(ArtifactStoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ArtifactStore:
        return LocalArtifactStore(tmp_path / "artifacts")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_blobs_are_laid_out_like_a_dvc_3_cache_and_read_only(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root)
    data = b'{"text": "hello"}\n'
    digest = md5(data)
    store.put_chunks([data])
    path = root / "files" / "md5" / digest[:2] / digest[2:]
    assert _files(root) == [path]
    assert store.local_path(digest) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert path.read_bytes() == data


def test_writes_in_progress_stay_in_the_temporary_directory(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root)
    with store.open_writer() as writer:
        writer.write(b"partial")
        partial = _files(root)
        assert len(partial) == 1
        assert partial[0].parent == root / "tmp"
        assert partial[0].name.endswith(".part")
    assert _files(root) == []


def test_a_reader_keeps_its_bytes_when_the_same_content_is_committed_again(
    tmp_path: Path,
) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    data = os.urandom(3 * 1024 * 1024)
    digest = store.put_chunks([data]).hash
    reading = store.open_range(digest)
    first = next(reading)
    assert not store.put_chunks([data]).created
    assert first + b"".join(reading) == data


def test_temporaries_no_writer_holds_are_removed_at_start_whatever_their_age(
    tmp_path: Path,
) -> None:
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root)
    # Left by a server that crashed mid-upload a moment ago: no process holds it.
    crashed = root / "tmp" / "blob-crashed.part"
    crashed.write_bytes(b"left by a crashed upload")
    live = store.open_writer()  # another upload, still in progress
    live.write(b"still being written")
    live_files = set((root / "tmp").glob("*.part")) - {crashed}
    LocalArtifactStore(root)
    assert not crashed.exists()
    assert len(live_files) == 1 and all(path.exists() for path in live_files)
    assert live.commit().size == len(b"still being written")


def test_a_failed_write_aborts_the_writer(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root)
    writer = store.open_writer()
    writer.write(b"some bytes")
    # The disk going away mid-upload, as far as the writer can tell.
    writer._file.close()  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        writer.write(b"x" * (1024 * 1024))
    assert _files(root) == []
    with pytest.raises(RuntimeError):
        writer.write(b"more")
