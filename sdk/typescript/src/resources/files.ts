/** Multipart bodies that report progress as they are read, and ranged downloads. */

import type { Transport } from "../transport.js";
import type { ProgressCallback } from "../types.js";

const CRLF = "\r\n";

function quoteName(value: string): string {
  return value.replace(/"/g, "%22").replace(/[\r\n]/g, "");
}

/** `multipart/form-data` with text fields and one file part (`file`), built around a Blob. */
export class Multipart {
  readonly boundary = `sparktrainer-${crypto.randomUUID().replace(/-/g, "")}`;
  private readonly head: Uint8Array<ArrayBuffer>;
  private readonly tail: Uint8Array<ArrayBuffer>;

  constructor(
    fields: Record<string, string>,
    private readonly file: Blob,
    filename: string,
  ) {
    let head = "";
    for (const [name, value] of Object.entries(fields)) {
      head += `--${this.boundary}${CRLF}Content-Disposition: form-data; name="${quoteName(name)}"${CRLF}${CRLF}${value}${CRLF}`;
    }
    head +=
      `--${this.boundary}${CRLF}Content-Disposition: form-data; name="file"; filename="${quoteName(filename)}"${CRLF}` +
      `Content-Type: application/octet-stream${CRLF}${CRLF}`;
    const encoder = new TextEncoder();
    this.head = encoder.encode(head);
    this.tail = encoder.encode(`${CRLF}--${this.boundary}--${CRLF}`);
  }

  get contentType(): string {
    return `multipart/form-data; boundary=${this.boundary}`;
  }

  get length(): number {
    return this.head.byteLength + this.file.size + this.tail.byteLength;
  }

  /** The whole body as one Blob (for fetch implementations that cannot stream a request). */
  blob(): Blob {
    return new Blob([this.head, this.file, this.tail]);
  }

  /**
   * The body as a stream, read from the file as it is sent; `progress` counts file bytes,
   * `touch` is called as each chunk goes.
   */
  stream(progress?: ProgressCallback, touch?: () => void): ReadableStream<Uint8Array> {
    const total = this.file.size;
    const parts = [this.head, this.file, this.tail];
    let index = 0;
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        touch?.();
        for (;;) {
          const part = parts[index];
          if (part === undefined) {
            if (total === 0) progress?.(0, 0);
            controller.close();
            return;
          }
          if (part instanceof Uint8Array) {
            index += 1;
            controller.enqueue(part);
            return;
          }
          reader ??= part.stream().getReader();
          const { done, value } = await reader.read();
          if (done) {
            reader = null;
            index += 1;
            continue;
          }
          sent += value.byteLength;
          controller.enqueue(value);
          progress?.(sent, total);
          return;
        }
      },
      cancel: async (reason) => {
        await reader?.cancel(reason);
      },
    });
  }
}

/** Whether this runtime streams request bodies over plain HTTP/1.1 (Node does; browsers
 * need HTTP/2 for it, so there the body is sent whole and progress is reported at the end). */
export function streamsRequestBodies(): boolean {
  return typeof (globalThis as { document?: unknown }).document === "undefined";
}

export interface Download {
  /** The body; read it to the end or cancel it. */
  body: ReadableStream<Uint8Array>;
  /** Bytes of the whole file, when the server said. */
  total: number | null;
  /** Whether the answer starts at the offset asked for (206) rather than at 0 (200). */
  resumed: boolean;
  /** The file's md5 (hex), from the ETag, when the server sent one. */
  md5: string | null;
}

export async function openDownload(
  t: Transport,
  route: string,
  path: Record<string, string>,
  offset: number,
  signal?: AbortSignal,
): Promise<Download> {
  const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
  const response = await t.request("GET", route, { path, headers, signal });
  const resumed = response.status === 206;
  const range = response.headers.get("Content-Range") ?? "";
  const length = response.headers.get("Content-Length");
  let total: number | null = null;
  const whole = /\/(\d+)$/.exec(range);
  if (whole?.[1] !== undefined) total = Number(whole[1]);
  else if (length !== null && /^\d+$/.test(length)) total = (resumed ? offset : 0) + Number(length);
  const etag = (response.headers.get("ETag") ?? "").replace(/^W\//, "").replace(/"/g, "");
  return {
    body: response.body ?? new Blob([]).stream(),
    total,
    resumed,
    md5: /^[0-9a-f]{32}$/.test(etag) ? etag : null,
  };
}

/** Reads a download to the end into memory, reporting progress. */
export async function collect(download: Download, progress?: ProgressCallback): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let done = 0;
  const reader = download.body.getReader();
  for (;;) {
    const { done: finished, value } = await reader.read();
    if (finished) break;
    chunks.push(value);
    done += value.byteLength;
    progress?.(done, download.total);
  }
  const out = new Uint8Array(done);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
