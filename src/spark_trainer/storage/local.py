"""Blobs as files on a local (or mounted) filesystem, laid out like a DVC 3 cache.

    <root>/files/md5/<first 2 hex digits>/<remaining 30 hex digits>   committed blobs, 0444
    <root>/tmp/*.part                                                 writes in progress

A writer streams into a temporary file under ``<root>/tmp`` (the same filesystem as the
blobs, so the final rename is atomic), fsyncs it, makes it read-only and renames it into
place; the rename is the moment the blob becomes visible. A writer holds an exclusive
``flock`` on its temporary file for as long as it lives; a ``.part`` file nobody holds
locked belongs to no upload (its process died) and is removed when a store opens.
Readers open blobs by path, so a blob stays readable to whoever holds it open even while
another writer of the same content renames an identical file over it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from spark_trainer.storage.base import (
    ArtifactStore,
    BlobNotFound,
    BlobWriter,
    check_hash,
)

READ_CHUNK_BYTES = 1024 * 1024
WRITE_BUFFER_BYTES = 1024 * 1024
BLOB_MODE = 0o444


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry itself reaches the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalArtifactStore) -> None:
        super().__init__()
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.temp_dir, prefix="blob-", suffix=".part")
        # Released by the kernel when the file closes, or when this process dies.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._temp = Path(name)
        self._file: BinaryIO = os.fdopen(fd, "wb", buffering=WRITE_BUFFER_BYTES)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)

    def _commit(self, blob_hash: str, size: int) -> bool:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        target = self._store.blob_path(blob_hash)
        if target.exists():
            self._temp.unlink()
            return False
        self._temp.chmod(BLOB_MODE)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Two writers of the same content may both get here; the second rename replaces
        # an identical file, which changes no byte anyone can read.
        self._temp.replace(target)
        _fsync_dir(target.parent)
        return True

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._temp.unlink(missing_ok=True)


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files_dir = root / "files" / "md5"
        self.temp_dir = root / "tmp"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Removes every ``.part`` file no live writer holds, whatever its age (other
        processes sharing this store keep theirs: they hold them locked)."""
        for leftover in self.temp_dir.glob("*.part"):
            try:
                fd = os.open(leftover, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # an upload in progress
            else:
                leftover.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def blob_path(self, blob_hash: str) -> Path:
        check_hash(blob_hash)
        return self.files_dir / blob_hash[:2] / blob_hash[2:]

    def open_writer(self) -> BlobWriter:
        return _LocalWriter(self)

    def exists(self, blob_hash: str) -> bool:
        return self.blob_path(blob_hash).is_file()

    def size(self, blob_hash: str) -> int:
        try:
            return self.blob_path(blob_hash).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(blob_hash) from None

    def open_range(self, blob_hash: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            handle = self.blob_path(blob_hash).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(blob_hash) from None
        size = os.fstat(handle.fileno()).st_size
        stop = size if end is None else end
        if not 0 <= start <= stop <= size:
            handle.close()
            raise ValueError(f"range [{start}, {end}) is outside the blob's {size} bytes")
        return self._read(handle, start, stop)

    @staticmethod
    def _read(handle: BinaryIO, start: int, stop: int) -> Iterator[bytes]:
        with handle:
            handle.seek(start)
            remaining = stop - start
            while remaining > 0:
                chunk = handle.read(min(READ_CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def local_path(self, blob_hash: str) -> Path | None:
        path = self.blob_path(blob_hash)
        if not path.is_file():
            raise BlobNotFound(blob_hash)
        return path
