"""A multipart/form-data upload streamed straight into the artifact store.

Starlette's form parsing would spool the file to a temporary file first, to be copied
into the store afterwards: every byte written twice. Here the body is parsed as it
arrives from ``request.stream()`` and the file part's bytes go straight into a
:class:`~spark_trainer.storage.base.BlobWriter`, which hashes them (md5) in the same pass
as it writes them. Memory stays constant whatever the file's size.

Work is split between threads: the event loop receives, parses and inspects the content
(line count, preview), while a worker thread of the upload's own hands batches of about
:data:`BATCH_BYTES`, one batch behind, to the blob writer, which hashes each on a helper
thread while writing it. md5 and file writes release the GIL, so they overlap with the
parsing on a multi-core machine, and the event loop stays free for other requests.

Whatever goes wrong before the blob is committed (the client disconnects, the body ends
early or is malformed, the file is too large, a field is invalid), the writer is aborted
and its temporary file removed: nothing of the upload remains.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from spark_trainer.datasets.content import ContentInspector, ContentSummary
from spark_trainer.errors import BadRequest, PayloadTooLarge, ValidationFailed
from spark_trainer.storage.base import ArtifactStore, BlobInfo, BlobWriter

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Each batch costs a few hand-offs between threads; at 4 MiB the event loop waits on the
# worker far less than at 1 MiB (bench/dataset_upload.py), for ~12 MiB per upload in flight.
BATCH_BYTES = 4 * 1024 * 1024
# Room for the part headers and small fields around the file, on top of the file limit.
FORM_OVERHEAD_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024
MAX_FILENAME_CHARS = 255
FILE_FIELD = "file"

# One parsed piece of the file: ``data[start:end]`` of a chunk the parser was given.
Piece = tuple[bytes, int, int]


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    fields: dict[str, str]
    filename: str | None
    """As the client sent it (control characters removed): metadata, never a path."""
    blob: BlobInfo
    content: ContentSummary


def _too_large(max_file_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file exceeds the upload limit of {max_file_bytes} bytes")


class _Form:
    """The parser's callbacks: collects the small fields, batches the file's pieces."""

    def __init__(self, validators: Mapping[str, Callable[[str], str]], max_file_bytes: int) -> None:
        self.validators = validators
        self.max_file_bytes = max_file_bytes
        self.values: dict[str, str] = {}
        self.filename: str | None = None
        self.has_file = False
        self.complete = False
        self.batch: list[Piece] = []
        self.batch_bytes = 0
        self.inspector: ContentInspector | None = None
        self._file_bytes = 0
        self._part: str | None = None
        self._headers: dict[str, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._field = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def take_batch(self) -> list[Piece]:
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        return batch

    def check_complete(self) -> None:
        if not self.complete:
            raise BadRequest("The multipart body ended before its closing boundary")
        for name in self.validators:
            if name not in self.values:
                raise ValidationFailed(f"{name}: field required")
        if not self.has_file:
            raise ValidationFailed(f"{FILE_FIELD}: field required")

    def summary(self) -> ContentSummary:
        assert self.inspector is not None, "check_complete() first"
        return self.inspector.summary()

    def _part_begin(self) -> None:
        self._part = None
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").strip().lower()] = bytes(
            self._header_value
        )
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise BadRequest("Each multipart part needs 'Content-Disposition: form-data; name=…'")
        part = name.decode("utf-8", errors="replace")
        if part == FILE_FIELD:
            if self.has_file:
                raise BadRequest(f"{FILE_FIELD}: only one file per upload")
            self.has_file = True
            raw = options.get(b"filename")
            if raw is not None:
                text = raw.decode("utf-8", errors="replace")
                # Kept as metadata only; control characters (NUL above all) never reach
                # the database or a header.
                cleaned = "".join(c for c in text if c.isprintable())
                self.filename = cleaned[:MAX_FILENAME_CHARS] or None
            self.inspector = ContentInspector(self.filename)
        elif part in self.validators:
            if part in self.values:
                raise BadRequest(f"{part}: given more than once")
            self._field.clear()
        else:
            expected = ", ".join(f"'{n}'" for n in [*self.validators, FILE_FIELD])
            raise BadRequest(f"Unexpected form field '{part}'; expected {expected}")
        self._part = part

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == FILE_FIELD:
            self._file_bytes += end - start
            if self._file_bytes > self.max_file_bytes:
                raise _too_large(self.max_file_bytes)
            self.batch.append((data, start, end))
            self.batch_bytes += end - start
            # Here rather than on the worker: counting lines holds the GIL, and md5 and the
            # file writes on the worker release it, so the two run side by side.
            assert self.inspector is not None
            self.inspector.feed(data, start, end)
            return
        self._field += data[start:end]
        if len(self._field) > MAX_FIELD_BYTES:
            raise ValidationFailed(f"{self._part}: longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        part = self._part
        if part is None or part == FILE_FIELD:
            return
        try:
            value = self._field.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed(f"{part}: not valid UTF-8") from None
        # Validated as soon as the field ends, so a bad name sent before the file stops
        # the upload before any of the file is stored.
        self.values[part] = self.validators[part](value)

    def _end(self) -> None:
        self.complete = True


class _BlobSink:
    """Feeds batches to the store's writer on a worker thread.

    Every call runs on the same single worker, in submission order, so the writer is
    only ever used by one thread at a time and the abort always follows the last write.
    """

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")
        self._writer: BlobWriter | None = None
        self._pending: asyncio.Future[None] | None = None

    async def push(self, batch: list[Piece]) -> None:
        """Hands ``batch`` over once the previous one is done (errors surface here)."""
        if self._pending is not None:
            await self._pending
        self._pending = self._loop.run_in_executor(self._worker, self._write, batch)

    async def commit(self) -> BlobInfo:
        if self._pending is not None:
            await self._pending
        return await self._loop.run_in_executor(self._worker, self._commit)

    async def close(self) -> None:
        """Aborts the writer unless it was committed, after any write still running.

        The abort is queued before anything is awaited, so it runs even if this task is
        cancelled while waiting.
        """
        pending = self._pending
        if pending is None:
            # Nothing was handed over (the form failed before its file): no writer exists.
            self._worker.shutdown(wait=False)
            return
        aborted = asyncio.wrap_future(self._worker.submit(self._abort))
        self._worker.shutdown(wait=False)
        await asyncio.wait([pending])
        if not pending.cancelled():
            # Consumed on purpose: whatever ended the upload is the error reported.
            pending.exception()
        await aborted

    def _open(self) -> BlobWriter:
        if self._writer is None:
            self._writer = self._store.open_writer()
        return self._writer

    def _write(self, batch: list[Piece]) -> None:
        # One contiguous write per batch (a memcpy): each write is a hand-off to the
        # writer's hashing thread and back, which costs the same however large it is.
        self._open().write(b"".join([memoryview(data)[start:end] for data, start, end in batch]))

    def _commit(self) -> BlobInfo:
        return self._open().commit()

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadRequest("Content-Type must be multipart/form-data (with a boundary)")
    return boundary


async def feed_form(
    request: Request,
    callbacks: MultipartCallbacks,
    *,
    max_bytes: int,
    too_large: Callable[[int], PayloadTooLarge],
) -> AsyncIterator[None]:
    """Streams the request's multipart body into a parser with ``callbacks``, yielding
    after each chunk so the caller can store what the callbacks collected.

    Raises 400 for a body that is not ``multipart/form-data``, malformed or cut off, and
    ``too_large(max_bytes)`` once the body (declared or received) passes ``max_bytes``
    plus the form's own overhead.
    """
    boundary = _boundary(request.headers.get("content-type"))
    body_limit = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise too_large(max_bytes)
    try:
        parser = MultipartParser(boundary, callbacks=callbacks)
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise too_large(max_bytes)
            parser.write(chunk)
            yield
    except FormParserError as exc:
        raise BadRequest(f"Malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise BadRequest("The upload was interrupted: the client disconnected") from None


async def receive_upload(
    request: Request,
    store: ArtifactStore,
    *,
    fields: Mapping[str, Callable[[str], str]],
    max_file_bytes: int,
) -> ReceivedUpload:
    """Reads a form of small text ``fields`` (each required, each checked by its
    validator, which returns the value to keep) and one ``file`` part, in any order; the
    file is committed to ``store`` once the whole body has arrived intact.

    Raises 400 for a malformed or incomplete body and 413 past ``max_file_bytes``.
    """
    form = _Form(fields, max_file_bytes)
    sink = _BlobSink(store)
    try:
        async for _ in feed_form(
            request, form.callbacks(), max_bytes=max_file_bytes, too_large=_too_large
        ):
            if form.batch_bytes >= BATCH_BYTES:
                await sink.push(form.take_batch())
        form.check_complete()
        await sink.push(form.take_batch())
        blob = await sink.commit()
    finally:
        await sink.close()
    return ReceivedUpload(
        fields=form.values,
        filename=form.filename,
        blob=blob,
        content=form.summary(),
    )
