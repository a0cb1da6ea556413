import { streamMetrics } from "../streams.js";
import type { MetricPoint, StreamMetricsOptions, Unsubscribe, WebSocketConstructor } from "../streams.js";
import type { Transport } from "../transport.js";
import type { Job, JobDetail, JobStatus, MetricsAccepted, MetricsHistory, Page } from "../types.js";
import { Resource, body, type Paging } from "./base.js";
import { sleep } from "../retry.js";

export interface JobCreateParams {
  name: string;
  /** Run with `/bin/sh -c`. */
  command: string;
  /** Whole GPUs, all on one node (server default 1). */
  gpuCount?: number;
  /** Higher runs first; FIFO within a priority. */
  priority?: number;
  /** Extra environment variables (keys are sent as given). */
  environment?: Record<string, string>;
  experimentId?: string;
  datasetId?: string;
  datasetVersion?: string;
  modelName?: string;
  timeoutSeconds?: number;
  workingDir?: string;
}

export interface JobListParams extends Paging {
  status?: JobStatus;
}

export interface JobLogsParams {
  stream?: "stdout" | "stderr";
  tail?: number;
  offset?: number;
}

export interface JobMetricsParams {
  names?: string[];
  stepMin?: number;
  stepMax?: number;
  maxPoints?: number;
}

const FINAL: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

export class Jobs extends Resource {
  constructor(
    t: Transport,
    private readonly webSocket: WebSocketConstructor | null,
  ) {
    super(t);
  }

  /** Submits a job; it answers at once with `status: "pending"`. */
  create(params: JobCreateParams): Promise<Job> {
    return this.t.json<Job>("POST", "/api/jobs", {
      json: body({
        name: params.name,
        command: params.command,
        gpu_count: params.gpuCount,
        priority: params.priority,
        environment: params.environment,
        experiment_id: params.experimentId,
        dataset_id: params.datasetId,
        dataset_version: params.datasetVersion,
        model_name: params.modelName,
        timeout_seconds: params.timeoutSeconds,
        working_dir: params.workingDir,
      }),
    });
  }

  list(params: JobListParams = {}): Promise<Page<Job>> {
    return this.t.json<Page<Job>>("GET", "/api/jobs", {
      query: { status: params.status, limit: params.limit, offset: params.offset },
    });
  }

  /** A job with its status history (`events`). */
  get(jobId: string): Promise<JobDetail> {
    return this.t.json<JobDetail>("GET", "/api/jobs/{job_id}", { path: { job_id: jobId } });
  }

  /** Cancels a job; a `ConflictError` if it has already ended. */
  cancel(jobId: string): Promise<Job> {
    return this.t.json<Job>("POST", "/api/jobs/{job_id}/cancel", { path: { job_id: jobId } });
  }

  /** The job's log so far (`tail`: the last lines only). */
  async logs(jobId: string, params: JobLogsParams = {}): Promise<string> {
    const response = await this.t.request("GET", "/api/jobs/{job_id}/logs", {
      path: { job_id: jobId },
      query: { stream: params.stream, tail: params.tail, offset: params.offset },
    });
    return response.text();
  }

  /**
   * The log as it is written, until the job ends: `for await (const text of
   * client.jobs.followLogs(id)) ...`. A dropped connection resumes from the byte offset
   * reached, so no text repeats or goes missing; `break` closes the connection.
   */
  async *followLogs(
    jobId: string,
    params: { stream?: "stdout" | "stderr"; offset?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<string> {
    let offset = params.offset ?? 0;
    let failures = 0;
    const decoder = new TextDecoder();
    for (;;) {
      const controller = new AbortController();
      const onAbort = (): void => controller.abort(params.signal?.reason);
      params.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        const response = await this.t.request("GET", "/api/jobs/{job_id}/logs", {
          path: { job_id: jobId },
          query: { stream: params.stream, offset, follow: true },
          signal: controller.signal,
        });
        offset = Number(response.headers.get("X-Log-Offset") ?? offset);
        if (response.body === null) return;
        const reader = response.body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            offset += value.byteLength;
            failures = 0;
            // A character split between chunks waits in the decoder for its other bytes.
            const text = decoder.decode(value, { stream: true });
            if (text) yield text;
          }
        } finally {
          reader.cancel().catch(() => undefined);
        }
        const rest = decoder.decode();
        if (rest) yield rest;
        return;
      } catch (error) {
        failures += 1;
        const delay = error instanceof TypeError ? this.t.retry.delay(failures) : null;
        if (params.signal?.aborted || delay === null) throw error;
        await sleep(delay, params.signal);
      } finally {
        params.signal?.removeEventListener("abort", onAbort);
        controller.abort();
      }
    }
  }

  /** Stored metric history, as columns per metric (downsampled with `maxPoints`). */
  metrics(jobId: string, params: JobMetricsParams = {}): Promise<MetricsHistory> {
    return this.t.json<MetricsHistory>("GET", "/api/jobs/{job_id}/metrics", {
      path: { job_id: jobId },
      query: {
        name: params.names,
        step_min: params.stepMin,
        step_max: params.stepMax,
        max_points: params.maxPoints,
      },
    });
  }

  /** Posts points `{ step: 1, metrics: { loss: 0.4 } }` for a running job. */
  logMetrics(
    jobId: string,
    points: { step: number; metrics: Record<string, number> }[],
  ): Promise<MetricsAccepted> {
    return this.t.json<MetricsAccepted>("POST", "/api/jobs/{job_id}/metrics", {
      path: { job_id: jobId },
      json: { points },
    });
  }

  /**
   * Calls `callback` with every point of the job, stored ones first, then live ones, until
   * the job ends; answers a function that stops the stream (with `.done`, a promise of how
   * the job ended). WebSocket first, Server-Sent Events as the fallback; a dropped
   * connection resumes after the last event id, so no point is repeated or skipped.
   */
  streamMetrics(
    jobId: string,
    callback: (point: MetricPoint) => void,
    options?: StreamMetricsOptions,
  ): Unsubscribe {
    return streamMetrics(this.t, this.webSocket, jobId, callback, options);
  }

  /** Waits until the job has ended and answers it. */
  async wait(jobId: string, options: { pollSeconds?: number; signal?: AbortSignal } = {}): Promise<JobDetail> {
    for (;;) {
      const job = await this.get(jobId);
      if (FINAL.has(job.status)) return job;
      await sleep(options.pollSeconds ?? 1, options.signal);
    }
  }
}
