"""A model a user already has, uploaded as several files or one archive, streamed into the
artifact store.

The form (``multipart/form-data``) carries ``name``, optionally ``description``, and
either one ``file`` part per file, whose *filename* is the file's path inside the model
(``curl -F "file=@tok/vocab.json;filename=tok/vocab.json"``), or a single ``archive`` part
(a tar, optionally gzip/bzip2/xz-compressed, or a zip).

Paths are metadata, never filesystem paths: each must be a plain relative POSIX path (no
``..``, no leading ``/``, no backslashes or control characters) and is stored normalised.
Archive members are checked the same way, and links, devices and other special members
are refused, so nothing can point outside the model.

Each file's bytes go into a :class:`~spark_trainer.storage.base.BlobWriter` as they arrive,
hashed (md5) in the same pass; no writer is committed until the whole body has arrived
intact and every path checked, and any failure aborts them all: an interrupted or refused
upload leaves no file behind. An archive needs random access (zip) and is spooled to an
anonymous temporary file first; its members are then written to the store one by one.
"""

from __future__ import annotations

import asyncio
import functools
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from spark_trainer.datasets.upload import BATCH_BYTES, feed_form
from spark_trainer.errors import BadRequest, PayloadTooLarge, ValidationFailed
from spark_trainer.storage.base import ArtifactStore, BlobInfo, BlobWriter

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
ARCHIVE_FIELD = "archive"
MAX_FILES = 10_000
MAX_PATH_CHARS = 1024
MAX_FIELD_BYTES = 10_000
COPY_BYTES = 1024 * 1024


def model_path(raw: str) -> str:
    """``raw`` as a normalised relative path inside a model, or a 400 naming it."""
    cleaned = raw.removeprefix("./")
    problem = None
    if not cleaned or len(cleaned) > MAX_PATH_CHARS:
        problem = f"must be 1 to {MAX_PATH_CHARS} characters"
    elif "\\" in cleaned or any(not c.isprintable() for c in cleaned):
        problem = "must not contain backslashes or control characters"
    else:
        path = PurePosixPath(cleaned)
        if path.is_absolute() or ".." in path.parts:
            problem = "must be a relative path inside the model (no '/' prefix, no '..')"
    if problem is not None:
        raise ValidationFailed(f"file path {raw[:100]!r} {problem}")
    parts = [p for p in PurePosixPath(cleaned).parts if p != "."]
    if not parts:
        raise ValidationFailed(f"file path {raw[:100]!r} names no file")
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class ReceivedModel:
    fields: dict[str, str]
    files: list[tuple[str, BlobInfo]]
    """(normalised path, stored blob), sorted by path."""


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The model's files exceed the upload limit of {limit} bytes")


class _Writers:
    """Every blob writer of one upload, driven from one worker thread in submission order
    (a writer is used by one thread at a time), committed together or aborted together."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-upload")
        self._writers: list[BlobWriter] = []
        self._pending: asyncio.Future[None] | None = None

    def run(self, work: Callable[[], None]) -> asyncio.Future[None]:
        return self._loop.run_in_executor(self._worker, work)

    async def push(self, index: int, data: bytes) -> None:
        if self._pending is not None:
            await self._pending
        self._pending = self.run(lambda: self.writer(index).write(data))

    def writer(self, index: int) -> BlobWriter:
        """The ``index``-th writer, opened on first use (worker thread only)."""
        while len(self._writers) <= index:
            self._writers.append(self._store.open_writer())
        return self._writers[index]

    async def drain(self) -> None:
        if self._pending is not None:
            await self._pending

    async def commit(self) -> list[BlobInfo]:
        await self.drain()
        committed: list[BlobInfo] = []
        await self.run(lambda: committed.extend(w.commit() for w in self._writers))
        return committed

    async def close(self) -> None:
        """Aborts every writer not committed, after any write still running; queued before
        anything is awaited, so it runs even if the request is cancelled meanwhile."""
        aborted = asyncio.wrap_future(self._worker.submit(self._abort_all))
        self._worker.shutdown(wait=False)
        if self._pending is not None:
            await asyncio.wait([self._pending])
            if not self._pending.cancelled():
                self._pending.exception()  # whatever ended the upload is the error reported
        await aborted

    def _abort_all(self) -> None:
        for writer in self._writers:
            writer.abort()


@dataclass
class _Part:
    kind: str
    path: str | None
    pieces: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    ended: bool = False
    pushed: bool = False

    def take(self) -> bytes:
        data, self.pieces, self.pending_bytes = b"".join(self.pieces), [], 0
        return data


class _Form:
    """The parser's callbacks: small text fields, and the file parts' bytes in order."""

    def __init__(self, validators: dict[str, Callable[[str], str]], limit: int) -> None:
        self.validators = validators
        self.limit = limit
        self.values: dict[str, str] = {}
        self.parts: list[_Part] = []
        self.complete = False
        self.total_bytes = 0
        self._field: str | None = None
        self._text = bytearray()
        self._headers: dict[str, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._paths: set[str] = set()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    @property
    def archive(self) -> bool:
        return any(p.kind == ARCHIVE_FIELD for p in self.parts)

    def check_complete(self) -> None:
        if not self.complete:
            raise BadRequest("The multipart body ended before its closing boundary")
        if "name" not in self.values:
            raise ValidationFailed("name: field required")
        if not self.parts:
            raise ValidationFailed(f"{FILE_FIELD}: at least one file (or one {ARCHIVE_FIELD})")

    def _part_begin(self) -> None:
        self._field = None
        self._headers = {}

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        raw_name = options.get(b"name")
        if disposition != b"form-data" or raw_name is None:
            raise BadRequest("Each multipart part needs 'Content-Disposition: form-data; name=…'")
        name = raw_name.decode("utf-8", errors="replace")
        if name == FILE_FIELD:
            if self.archive:
                raise BadRequest(f"Send files or one {ARCHIVE_FIELD}, not both")
            raw = options.get(b"filename")
            if raw is None:
                raise ValidationFailed(f"{FILE_FIELD}: each file part needs a filename (its path)")
            path = model_path(raw.decode("utf-8", errors="replace"))
            if path in self._paths:
                raise ValidationFailed(f"file path '{path}' given more than once")
            if len(self._paths) >= MAX_FILES:
                raise ValidationFailed(f"{FILE_FIELD}: at most {MAX_FILES} files")
            self._paths.add(path)
            self.parts.append(_Part(FILE_FIELD, path))
        elif name == ARCHIVE_FIELD:
            if self.parts:
                raise BadRequest(f"Send files or one {ARCHIVE_FIELD}, not both")
            self.parts.append(_Part(ARCHIVE_FIELD, None))
        elif name in self.validators:
            if name in self.values:
                raise BadRequest(f"{name}: given more than once")
            self._text.clear()
            self._field = name
            return
        else:
            fields = ", ".join(f"'{n}'" for n in [*self.validators, FILE_FIELD, ARCHIVE_FIELD])
            raise BadRequest(f"Unexpected form field '{name}'; expected {fields}")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise ValidationFailed(f"{self._field}: longer than {MAX_FIELD_BYTES} bytes")
            return
        part = self.parts[-1]
        self.total_bytes += end - start
        if self.total_bytes > self.limit:
            raise _too_large(self.limit)
        part.pieces.append(data[start:end])
        part.pending_bytes += end - start

    def _part_end(self) -> None:
        if self._field is not None:
            try:
                value = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationFailed(f"{self._field}: not valid UTF-8") from None
            # Checked as soon as the field ends: a bad name sent first stores nothing.
            self.values[self._field] = self.validators[self._field](value)
            self._field = None
        elif self.parts:
            self.parts[-1].ended = True

    def _end(self) -> None:
        self.complete = True


async def receive_model(
    request: Request,
    store: ArtifactStore,
    *,
    fields: dict[str, Callable[[str], str]],
    max_total_bytes: int,
    spool_dir: Path,
) -> ReceivedModel:
    """Reads the form and stores the model's files; raises 400 for a malformed body or
    an unsafe path and 413 past ``max_total_bytes`` (files, or an archive's contents)."""
    form = _Form(fields, max_total_bytes)
    writers = _Writers(store)
    spool: IO[bytes] | None = None
    try:
        async for _ in feed_form(
            request, form.callbacks(), max_bytes=max_total_bytes, too_large=_too_large
        ):
            for index, part in enumerate(form.parts):
                if part.pushed or not (part.ended or part.pending_bytes >= BATCH_BYTES):
                    continue
                if part.kind == ARCHIVE_FIELD:
                    if spool is None:
                        spool = await asyncio.to_thread(_open_spool, spool_dir)
                    await writers.drain()
                    await writers.run(functools.partial(_spool, spool, part.take()))
                else:
                    await writers.push(index, part.take())
                part.pushed = part.ended
        form.check_complete()
        if spool is not None:
            await writers.drain()
            extracted: list[str] = []
            archive = spool
            await writers.run(lambda: extracted.extend(_extract(archive, writers, max_total_bytes)))
            paths = extracted
        else:
            paths = [part.path for part in form.parts if part.path is not None]
        blobs = await writers.commit()
    finally:
        await writers.close()
        if spool is not None:
            spool.close()
    return ReceivedModel(fields=form.values, files=sorted(zip(paths, blobs, strict=True)))


# --- archives (run on the upload's worker thread) -------------------------------------


def _open_spool(spool_dir: Path) -> IO[bytes]:
    spool_dir.mkdir(parents=True, exist_ok=True)
    # Anonymous: no name on disk, gone when closed, whatever happens.
    return tempfile.TemporaryFile(dir=spool_dir)


def _spool(spool: IO[bytes], data: bytes) -> None:
    spool.write(data)


def _extract(archive: IO[bytes], writers: _Writers, limit: int) -> list[str]:
    """Writes each regular member of the spooled archive into a writer of its own; returns
    the members' normalised paths in writer order."""
    archive.seek(0)
    if zipfile.is_zipfile(archive):
        archive.seek(0)
        return _extract_zip(archive, writers, limit)
    archive.seek(0)
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            return _extract_tar(tar, writers, limit)
    except tarfile.TarError as exc:
        raise ValidationFailed(f"{ARCHIVE_FIELD}: not a tar or zip archive ({exc})") from None


def _copy(source: IO[bytes], writer: BlobWriter, total: list[int], limit: int) -> None:
    for chunk in iter(lambda: source.read(COPY_BYTES), b""):
        total[0] += len(chunk)
        if total[0] > limit:
            raise _too_large(limit)
        writer.write(chunk)


def _extract_tar(tar: tarfile.TarFile, writers: _Writers, limit: int) -> list[str]:
    paths: list[str] = []
    total = [0]
    for member in _members(tar):
        if member.isdir():
            continue
        if not member.isfile():
            raise ValidationFailed(
                f"{ARCHIVE_FIELD}: member {member.name[:100]!r} is a link or special file; "
                "only regular files and directories are accepted"
            )
        path = _archive_path(member.name, paths)
        source = tar.extractfile(member)
        assert source is not None, "a regular member always has content"
        _copy(source, writers.writer(len(paths)), total, limit)
        paths.append(path)
    return _nonempty(paths)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for count, member in enumerate(tar, start=1):
        if count > MAX_FILES:
            raise ValidationFailed(f"{ARCHIVE_FIELD}: more than {MAX_FILES} members")
        yield member


def _extract_zip(archive: IO[bytes], writers: _Writers, limit: int) -> list[str]:
    paths: list[str] = []
    total = [0]
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if len(members) > MAX_FILES:
                raise ValidationFailed(f"{ARCHIVE_FIELD}: more than {MAX_FILES} members")
            for member in members:
                if member.is_dir():
                    continue
                # Unix mode in the high bits: a symbolic link stored by zip -y.
                if (member.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                    raise ValidationFailed(
                        f"{ARCHIVE_FIELD}: member {member.filename[:100]!r} is a link or "
                        "special file; only regular files and directories are accepted"
                    )
                path = _archive_path(member.filename, paths)
                with bundle.open(member) as source:
                    _copy(source, writers.writer(len(paths)), total, limit)
                paths.append(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ValidationFailed(f"{ARCHIVE_FIELD}: a damaged zip archive ({exc})") from None
    return _nonempty(paths)


def _archive_path(name: str, seen: list[str]) -> str:
    path = model_path(name)
    if path in seen:
        raise ValidationFailed(f"{ARCHIVE_FIELD}: file path '{path}' appears more than once")
    return path


def _nonempty(paths: list[str]) -> list[str]:
    if not paths:
        raise ValidationFailed(f"{ARCHIVE_FIELD}: the archive holds no files")
    return paths
