"""The artifact store contract: immutable blobs addressed by the md5 of their bytes.

Datasets and model files are kept as blobs. A blob's address is the md5 hex digest of
its raw bytes, exactly what DVC 3 computes for a file (DVC 2 converted CRLF to LF in text
files before hashing; DVC 3 hashes every file as binary, and so do we), so a DVC user can
recognise any blob and the layout of the local store.

Every store keeps these rules; ``tests/storage/conformance.py`` checks them, and a new
backend counts as done when that suite passes against it:

- **Atomic visibility.** Bytes go through a :class:`BlobWriter`. Until its
  :meth:`BlobWriter.commit` returns, nothing of the blob is visible: :meth:`ArtifactStore.exists`
  is false and no reader can open a partial blob. A writer that is aborted, or left
  without committing (its ``with`` block raised or simply ended), leaves nothing behind.
- **Immutability.** A committed blob's bytes never change. Committing content that is
  already stored keeps the stored copy and stores nothing new (``BlobInfo.created`` is
  false), so identical content is kept once however many datasets or models name it.
- **Thread safety.** Store methods may be called from any number of threads at once,
  including several writers committing the same content. One writer belongs to one
  thread at a time (it may move between threads, never be used by two at once).
- **No deletion through this interface.** Rows in the database refer to blobs by hash;
  a blob whose rows failed to commit stays as unreferenced content, which a later
  identical upload reuses.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
COPY_CHUNK_BYTES = 1024 * 1024
PARALLEL_HASH_MIN_BYTES = 256 * 1024


class BlobNotFound(LookupError):
    """No committed blob has this hash."""


def check_hash(blob_hash: str) -> str:
    """Returns ``blob_hash`` if it is an md5 hex digest; a store never builds a path or
    key from anything else."""
    if not _MD5_HEX.match(blob_hash):
        raise ValueError(f"not an md5 hex digest: {blob_hash!r}")
    return blob_hash


@dataclass(frozen=True, slots=True)
class BlobInfo:
    hash: str
    size: int
    created: bool
    """False when identical content was already stored and nothing new was written."""


class BlobWriter(ABC):
    """Receives one blob's bytes, hashing them in the same pass as they are written.

    Use it as a context manager: leaving the block without :meth:`commit` (or through an
    exception) aborts, so the partial bytes vanish.

    A chunk of :data:`PARALLEL_HASH_MIN_BYTES` or more is hashed on a helper thread while
    the store writes it: md5 and file writes both release the GIL, so on a multi-core
    machine a large blob costs about the slower of the two rather than their sum.
    :meth:`write` still returns only once the chunk is both hashed and written, so the
    caller may reuse its buffer straight away.
    """

    def __init__(self) -> None:
        # usedforsecurity=False: md5 is the content address (DVC's choice), not a defence.
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._size = 0
        self._finished = False
        self._hasher: ThreadPoolExecutor | None = None

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Adds ``data`` to the blob. A write that fails aborts the writer: the bytes
        hashed and the bytes stored could no longer be trusted to agree."""
        if self._finished:
            raise RuntimeError("writer already committed or aborted")
        size = memoryview(data).nbytes
        try:
            if size < PARALLEL_HASH_MIN_BYTES:
                self._md5.update(data)
                self._write(data)
            else:
                if self._hasher is None:
                    self._hasher = ThreadPoolExecutor(1, thread_name_prefix="blob-md5")
                hashed = self._hasher.submit(self._md5.update, data)
                try:
                    self._write(data)
                finally:
                    hashed.result()
        except BaseException:
            self.abort()
            raise
        self._size += size

    def commit(self) -> BlobInfo:
        """Makes the blob durable and visible under its md5; returns what was stored."""
        if self._finished:
            raise RuntimeError("writer already committed or aborted")
        self._finished = True
        self._stop_hasher()
        blob_hash = self._md5.hexdigest()
        try:
            created = self._commit(blob_hash, self._size)
        except BaseException:
            self._abort()
            raise
        return BlobInfo(hash=blob_hash, size=self._size, created=created)

    def abort(self) -> None:
        """Discards everything written; a no-op once committed or aborted."""
        if self._finished:
            return
        self._finished = True
        self._stop_hasher()
        self._abort()

    def _stop_hasher(self) -> None:
        if self._hasher is not None:
            self._hasher.shutdown()
            self._hasher = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()

    @abstractmethod
    def _write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def _commit(self, blob_hash: str, size: int) -> bool:
        """Publishes the written bytes atomically under ``blob_hash``; True if they were
        stored, False if that content was already there (the new copy is dropped)."""

    @abstractmethod
    def _abort(self) -> None: ...


class ArtifactStore(ABC):
    """Where blobs live. The primitives are abstract; the helpers below build on them."""

    @abstractmethod
    def open_writer(self) -> BlobWriter: ...

    @abstractmethod
    def exists(self, blob_hash: str) -> bool: ...

    @abstractmethod
    def size(self, blob_hash: str) -> int:
        """The blob's length in bytes; :class:`BlobNotFound` if it is not stored."""

    @abstractmethod
    def open_range(self, blob_hash: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of a blob (``end`` None: to its end), in chunks.

        Raises :class:`BlobNotFound` at once (not on first iteration) if it is not stored,
        and :class:`ValueError` for a range outside ``0 <= start <= end <= size``.
        """

    @abstractmethod
    def local_path(self, blob_hash: str) -> Path | None:
        """A path on this machine where the blob can be read (read-only), or None for a
        store without local files (an object store). :class:`BlobNotFound` if not stored.
        Jobs read datasets straight from this path."""

    def put_chunks(self, chunks: Iterable[bytes | bytearray | memoryview]) -> BlobInfo:
        with self.open_writer() as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()

    def put_file(self, path: Path) -> BlobInfo:
        """Stores a local file's content (a job's output, say) without loading it whole."""
        with path.open("rb") as handle:
            return self.put_chunks(iter(lambda: handle.read(COPY_CHUNK_BYTES), b""))

    def read_bytes(self, blob_hash: str) -> bytes:
        """A whole blob in memory: for small blobs only (configs, metadata)."""
        return b"".join(self.open_range(blob_hash))
