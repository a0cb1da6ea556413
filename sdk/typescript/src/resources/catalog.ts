import type {
  Experiment,
  ExperimentDetail,
  Model,
  ModelDetail,
  Page,
  ProgressCallback,
  Run,
} from "../types.js";
import { Resource, body, type Paging } from "./base.js";
import { collect, openDownload, type Download } from "./files.js";

export interface ExperimentCreateParams {
  name: string;
  description?: string;
  tags?: Record<string, string>;
  /** Per metric, `minimize` or `maximize`: which value is a run's best. */
  metricGoals?: Record<string, "minimize" | "maximize">;
}

export interface ExperimentListParams extends Paging {
  name?: string;
  /** `key:value` each; every one must match. */
  tags?: string[];
}

export interface RunListParams extends Paging {
  /** `created_at`, `started_at`, `finished_at`, `name`, `status` or `metric:<name>`. */
  sort?: string;
  order?: "asc" | "desc";
}

export class Experiments extends Resource {
  create(params: ExperimentCreateParams): Promise<Experiment> {
    return this.t.json<Experiment>("POST", "/api/experiments", {
      json: body({
        name: params.name,
        description: params.description,
        tags: params.tags,
        metric_goals: params.metricGoals,
      }),
    });
  }

  list(params: ExperimentListParams = {}): Promise<Page<Experiment>> {
    return this.t.json<Page<Experiment>>("GET", "/api/experiments", {
      query: { name: params.name, tag: params.tags, limit: params.limit, offset: params.offset },
    });
  }

  get(experimentId: string): Promise<ExperimentDetail> {
    return this.t.json<ExperimentDetail>("GET", "/api/experiments/{experiment_id}", {
      path: { experiment_id: experimentId },
    });
  }

  /** The experiment's runs (its jobs) with each metric's summary. */
  runs(experimentId: string, params: RunListParams = {}): Promise<Page<Run>> {
    return this.t.json<Page<Run>>("GET", "/api/experiments/{experiment_id}/runs", {
      path: { experiment_id: experimentId },
      query: { sort: params.sort, order: params.order, limit: params.limit, offset: params.offset },
    });
  }
}

export interface ModelListParams extends Paging {
  name?: string;
  tag?: string;
}

export class Models extends Resource {
  list(params: ModelListParams = {}): Promise<Page<Model>> {
    return this.t.json<Page<Model>>("GET", "/api/models", {
      query: { name: params.name, tag: params.tag, limit: params.limit, offset: params.offset },
    });
  }

  /** A model version with its files and lineage. */
  get(modelId: string): Promise<ModelDetail> {
    return this.t.json<ModelDetail>("GET", "/api/models/{model_id}", { path: { model_id: modelId } });
  }

  /** Registers a completed job's output as a new model version. */
  register(params: { jobId: string; name?: string; description?: string }): Promise<ModelDetail> {
    return this.t.json<ModelDetail>("POST", "/api/models", {
      json: body({ job_id: params.jobId, name: params.name, description: params.description }),
    });
  }

  /** Points `tag` at this version (moving it off any other version of the name). */
  tag(modelId: string, tag: string): Promise<ModelDetail> {
    return this.t.json<ModelDetail>("POST", "/api/models/{model_id}/tag", {
      path: { model_id: modelId },
      json: { tag },
    });
  }

  untag(modelId: string, tag: string): Promise<ModelDetail> {
    return this.t.json<ModelDetail>("DELETE", "/api/models/{model_id}/tag/{tag}", {
      path: { model_id: modelId, tag },
    });
  }

  /** One file of a model version, in memory. */
  async downloadFile(
    modelId: string,
    filePath: string,
    params: { onProgress?: ProgressCallback; signal?: AbortSignal } = {},
  ): Promise<Uint8Array> {
    return collect(await this.openFile(modelId, filePath, { signal: params.signal }), params.onProgress);
  }

  /** One file of a model version as a stream, from byte `offset` on. */
  openFile(
    modelId: string,
    filePath: string,
    params: { offset?: number; signal?: AbortSignal } = {},
  ): Promise<Download> {
    return openDownload(
      this.t,
      "/api/models/{model_id}/files/{path}",
      { model_id: modelId, path: filePath },
      params.offset ?? 0,
      params.signal,
    );
  }
}
