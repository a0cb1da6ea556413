"""The artifact store contract as tests (see ``spark_trainer.storage.base``).

A backend passes when a subclass of :class:`ArtifactStoreConformance` that provides its
``store`` fixture passes, as ``test_local_store.py`` does for the local filesystem:

    class TestMyStore(ArtifactStoreConformance):
        @pytest.fixture
        def store(self, tmp_path: Path) -> ArtifactStore:
            return MyStore(...)
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from spark_trainer.storage.base import PARALLEL_HASH_MIN_BYTES, ArtifactStore, BlobNotFound

MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class ArtifactStoreConformance:
    @pytest.fixture
    def store(self) -> ArtifactStore:
        raise NotImplementedError("a subclass provides the store under test")

    def test_a_blob_is_visible_only_after_commit(self, store: ArtifactStore) -> None:
        data = os.urandom(3 * MiB + 17)
        with store.open_writer() as writer:
            for offset in range(0, len(data), 100_000):
                writer.write(data[offset : offset + 100_000])
            assert writer.size == len(data)
            assert not store.exists(md5(data))
            info = writer.commit()
        assert info.hash == md5(data)
        assert info.size == len(data)
        assert info.created
        assert store.exists(info.hash)
        assert store.size(info.hash) == len(data)
        assert store.read_bytes(info.hash) == data

    def test_writes_accept_memoryviews_and_bytearrays(self, store: ArtifactStore) -> None:
        data = b"0123456789" * 1000
        info = store.put_chunks([memoryview(data)[:5000], bytearray(data[5000:])])
        assert info.hash == md5(data)
        assert store.read_bytes(info.hash) == data

    def test_a_reused_buffer_does_not_change_what_was_written(self, store: ArtifactStore) -> None:
        # Small and large chunks (large ones are hashed on a helper thread): write() is
        # done with the buffer when it returns, as a caller filling one buffer expects.
        expected = bytearray()
        buffer = bytearray(PARALLEL_HASH_MIN_BYTES * 2)
        with store.open_writer() as writer:
            for size in (10, PARALLEL_HASH_MIN_BYTES, 1000, PARALLEL_HASH_MIN_BYTES * 2):
                buffer[:size] = os.urandom(size)
                writer.write(memoryview(buffer)[:size])
                expected += buffer[:size]
                buffer[:] = bytes(len(buffer))
            info = writer.commit()
        assert info.hash == md5(bytes(expected))
        assert store.read_bytes(info.hash) == expected

    def test_identical_content_is_stored_once(self, store: ArtifactStore) -> None:
        data = b"same bytes\n" * 1000
        first = store.put_chunks([data])
        second = store.put_chunks([data[:5], data[5:]])
        assert first.created
        assert not second.created
        assert (second.hash, second.size) == (first.hash, first.size)
        assert store.read_bytes(first.hash) == data

    def test_an_empty_blob(self, store: ArtifactStore) -> None:
        info = store.put_chunks([])
        assert info.hash == "d41d8cd98f00b204e9800998ecf8427e"
        assert store.size(info.hash) == 0
        assert store.read_bytes(info.hash) == b""

    def test_abort_leaves_nothing(self, store: ArtifactStore) -> None:
        data = os.urandom(MiB)
        writer = store.open_writer()
        writer.write(data)
        writer.abort()
        writer.abort()  # idempotent
        assert not store.exists(md5(data))
        with pytest.raises(RuntimeError):
            writer.write(b"more")
        with pytest.raises(RuntimeError):
            writer.commit()

    def test_an_exception_in_the_with_block_aborts(self, store: ArtifactStore) -> None:
        data = os.urandom(4096)
        with pytest.raises(ZeroDivisionError), store.open_writer() as writer:
            writer.write(data)
            _ = 1 / 0
        assert not store.exists(md5(data))

    def test_leaving_the_with_block_without_commit_aborts(self, store: ArtifactStore) -> None:
        data = os.urandom(4096)
        with store.open_writer() as writer:
            writer.write(data)
        assert not store.exists(md5(data))

    def test_a_committed_writer_takes_no_more(self, store: ArtifactStore) -> None:
        with store.open_writer() as writer:
            writer.write(b"done")
            writer.commit()
            with pytest.raises(RuntimeError):
                writer.write(b"more")
            with pytest.raises(RuntimeError):
                writer.commit()
        assert store.read_bytes(md5(b"done")) == b"done"

    def test_ranges(self, store: ArtifactStore) -> None:
        data = os.urandom(3 * MiB + 5)
        blob = store.put_chunks([data]).hash
        assert b"".join(store.open_range(blob, 0, 10)) == data[:10]
        assert b"".join(store.open_range(blob, 10)) == data[10:]
        assert b"".join(store.open_range(blob, MiB - 3, 2 * MiB + 9)) == data[MiB - 3 : 2 * MiB + 9]
        assert b"".join(store.open_range(blob, len(data), len(data))) == b""
        assert b"".join(store.open_range(blob)) == data
        for start, end in ((-1, 5), (5, 4), (0, len(data) + 1), (len(data) + 1, None)):
            with pytest.raises(ValueError):
                store.open_range(blob, start, end)

    def test_a_missing_blob_is_reported_at_once(self, store: ArtifactStore) -> None:
        missing = md5(b"never stored")
        assert not store.exists(missing)
        with pytest.raises(BlobNotFound):
            store.size(missing)
        with pytest.raises(BlobNotFound):
            store.open_range(missing)  # raised by the call, not on first iteration
        with pytest.raises(BlobNotFound):
            store.local_path(missing)

    @pytest.mark.parametrize(
        "bad", ["", "../../etc/passwd", "D41D8CD98F00B204E9800998ECF8427E", "d41d8cd9" * 5]
    )
    def test_only_md5_hex_digests_address_blobs(self, store: ArtifactStore, bad: str) -> None:
        for call in (store.exists, store.size, store.open_range, store.local_path):
            with pytest.raises(ValueError):
                call(bad)

    def test_local_path_is_none_or_the_readable_blob(self, store: ArtifactStore) -> None:
        data = b"read me directly\n"
        path = store.local_path(store.put_chunks([data]).hash)
        if path is not None:
            assert path.read_bytes() == data

    def test_put_file(self, store: ArtifactStore, tmp_path: Path) -> None:
        source = tmp_path / "weights.bin"
        data = os.urandom(2 * MiB + 1)
        source.write_bytes(data)
        info = store.put_file(source)
        assert (info.hash, info.size) == (md5(data), len(data))
        assert store.read_bytes(info.hash) == data

    def test_concurrent_writers(self, store: ArtifactStore) -> None:
        shared = os.urandom(MiB)
        distinct = [os.urandom(MiB) for _ in range(4)]
        payloads = [shared] * 4 + distinct
        results: list[str] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(payloads))

        def put(data: bytes) -> None:
            try:
                with store.open_writer() as writer:
                    barrier.wait()
                    for offset in range(0, len(data), 64 * 1024):
                        writer.write(data[offset : offset + 64 * 1024])
                    results.append(writer.commit().hash)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=put, args=(p,)) for p in payloads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(results) == sorted(md5(p) for p in payloads)
        for data in [shared, *distinct]:
            assert store.read_bytes(md5(data)) == data
