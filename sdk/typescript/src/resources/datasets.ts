import type { Dataset, DatasetDetail, DatasetVersionList, Page, ProgressCallback } from "../types.js";
import { Resource, type Paging } from "./base.js";
import { Multipart, collect, openDownload, streamsRequestBodies, type Download } from "./files.js";

export interface DatasetUploadParams {
  /** The dataset's name: its first upload creates it (v1.0.0), later ones add versions. */
  name: string;
  /** The file name sent with the bytes. Default: the Blob's own name (a File's), else `name`. */
  filename?: string;
  /** Called as the file's bytes go out: `(sent, total)`. */
  onProgress?: ProgressCallback;
  /**
   * Stream the body as it is read (default where the runtime can: Node; browsers send it
   * whole over HTTP/1.1, reporting progress once at the end).
   */
  streamed?: boolean;
  signal?: AbortSignal;
}

export interface DatasetDownloadParams {
  /** A version such as `v1.0.0`, or `latest` (default). */
  version?: string;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export class Datasets extends Resource {
  /** Uploads a file (a Blob or File) as a dataset, or as the next version of one. */
  upload(file: Blob, params: DatasetUploadParams): Promise<DatasetDetail> {
    const filename = params.filename ?? (file as Blob & { name?: string }).name ?? params.name;
    const multipart = new Multipart({ name: params.name }, file, filename);
    const streamed = params.streamed ?? streamsRequestBodies();
    const progress = params.onProgress;
    return this.t
      .json<DatasetDetail>("POST", "/api/datasets", {
        headers: { "Content-Type": multipart.contentType },
        body: (touch) => (streamed ? multipart.stream(progress, touch) : multipart.blob()),
        // A body sent whole says nothing of its progress: no limit on the wait for its answer.
        timeout: streamed ? undefined : null,
        signal: params.signal,
      })
      .then((dataset) => {
        if (!streamed) progress?.(file.size, file.size);
        return dataset;
      });
  }

  list(params: Paging & { name?: string } = {}): Promise<Page<Dataset>> {
    return this.t.json<Page<Dataset>>("GET", "/api/datasets", {
      query: { name: params.name, limit: params.limit, offset: params.offset },
    });
  }

  get(datasetId: string): Promise<DatasetDetail> {
    return this.t.json<DatasetDetail>("GET", "/api/datasets/{dataset_id}", {
      path: { dataset_id: datasetId },
    });
  }

  versions(datasetId: string): Promise<DatasetVersionList> {
    return this.t.json<DatasetVersionList>("GET", "/api/datasets/{dataset_id}/versions", {
      path: { dataset_id: datasetId },
    });
  }

  /** A version's bytes, in memory (for large files in Node see `downloadToFile`). */
  async download(datasetId: string, params: DatasetDownloadParams = {}): Promise<Uint8Array> {
    const download = await this.open(datasetId, { version: params.version, signal: params.signal });
    return collect(download, params.onProgress);
  }

  /** A version's bytes as a stream, from byte `offset` on (a `Range` request). */
  open(
    datasetId: string,
    params: { version?: string; offset?: number; signal?: AbortSignal } = {},
  ): Promise<Download> {
    return openDownload(
      this.t,
      "/api/datasets/{dataset_id}/versions/{version}/download",
      { dataset_id: datasetId, version: params.version ?? "latest" },
      params.offset ?? 0,
      params.signal,
    );
  }
}
