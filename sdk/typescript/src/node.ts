/**
 * `@sparktrainer/sdk/node`: the client for Node 20+, with what only Node has.
 *
 * The same `SparkTrainerClient`, with the `ws` package's WebSocket as its default (Node 20
 * has no global one), and datasets read from and written to disk: `uploadFile(path)`
 * streams a file from disk; `downloadToFile(id, path)` resumes an interrupted download and
 * checks the whole file against the server's md5 before renaming it into place.
 */

import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { openAsBlob } from "node:fs";
import { rename, stat, unlink } from "node:fs/promises";
import { basename } from "node:path";
import { Writable } from "node:stream";
import WebSocket from "ws";

import { SparkTrainerClient as BaseClient, type ClientOptions } from "./client.js";
import { RangeNotSatisfiableError, StreamError } from "./errors.js";
import { Datasets, type DatasetUploadParams } from "./resources/datasets.js";
import type { WebSocketConstructor } from "./streams.js";
import type { DatasetDetail, ProgressCallback } from "./types.js";

export * from "./index.js";

export class NodeDatasets extends Datasets {
  /** Uploads a file from disk (streamed, never read whole into memory). */
  async uploadFile(
    path: string,
    params: Partial<DatasetUploadParams> = {},
  ): Promise<DatasetDetail> {
    const file = await openAsBlob(path);
    const name = params.name ?? basename(path).replace(/\.[^.]*$/, "");
    return this.upload(file, { ...params, name, filename: params.filename ?? basename(path) });
  }

  /**
   * Downloads a version to `destination`. Bytes go to `<destination>.part` first; an
   * interrupted download (a dropped connection during this call, or an earlier process)
   * continues with a `Range` request, and the whole file is checked against the server's
   * md5 before it is renamed into place. Answers the destination.
   */
  async downloadToFile(
    datasetId: string,
    destination: string,
    params: { version?: string; onProgress?: ProgressCallback; signal?: AbortSignal } = {},
  ): Promise<string> {
    const part = `${destination}.part`;
    let failures = 0;
    for (;;) {
      try {
        const expected = await this.downloadPart(datasetId, part, params);
        if (expected !== null && (await md5(part)) !== expected) {
          await unlink(part);
          throw new StreamError(`${basename(destination)}: content does not match the server's md5`);
        }
        await rename(part, destination);
        return destination;
      } catch (error) {
        // A connection lost midway (fetch's TypeError): continue from what the part file has.
        const delay = error instanceof TypeError ? this.t.retry.delay(++failures) : null;
        if (delay === null || params.signal?.aborted) {
          if (delay === null && error instanceof TypeError) {
            throw new StreamError(`download of ${basename(destination)} lost: ${error.message}`, { cause: error });
          }
          throw error;
        }
        await new Promise((wake) => setTimeout(wake, delay * 1000));
      }
    }
  }

  /** Appends the rest of the file to `part`; answers the file's md5 when the server said. */
  private async downloadPart(
    datasetId: string,
    part: string,
    params: { version?: string; onProgress?: ProgressCallback; signal?: AbortSignal },
  ): Promise<string | null> {
    const have = await stat(part).then((s) => s.size, () => 0);
    let download;
    try {
      download = await this.open(datasetId, { version: params.version, offset: have, signal: params.signal });
    } catch (error) {
      if (!(error instanceof RangeNotSatisfiableError)) throw error;
      // The part file is already whole, or longer than the file: start over.
      await unlink(part);
      download = await this.open(datasetId, { version: params.version, signal: params.signal });
    }
    const total = download.total;
    let done = download.resumed ? have : 0;
    const counting = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        done += chunk.byteLength;
        params.onProgress?.(done, total);
        controller.enqueue(chunk);
      },
    });
    const out = createWriteStream(part, { flags: download.resumed ? "a" : "w" });
    await download.body.pipeThrough(counting).pipeTo(Writable.toWeb(out));
    return download.md5;
  }
}

function md5(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("md5");
    createReadStream(path)
      .on("data", (chunk) => hash.update(chunk))
      .on("error", reject)
      .on("end", () => resolve(hash.digest("hex")));
  });
}

export class SparkTrainerClient extends BaseClient {
  declare readonly datasets: NodeDatasets;

  constructor(options: ClientOptions) {
    super({ WebSocket: WebSocket as unknown as WebSocketConstructor, ...options });
    this.datasets = new NodeDatasets(this.transport);
  }
}
