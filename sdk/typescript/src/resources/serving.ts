import type {
  Backend,
  Benchmark,
  Deployment,
  DeploymentKey,
  DeploymentKeyCreated,
  Evaluation,
  Leaderboard as LeaderboardBody,
  Page,
} from "../types.js";
import { Resource, body, type Paging } from "./base.js";

export interface DeploymentCreateParams {
  /** Also the model name the endpoint serves under. */
  name: string;
  /** A registered model version. */
  modelId: string;
  backend: Backend;
  replicas?: number;
  gpuCount?: number;
}

export class Deployments extends Resource {
  create(params: DeploymentCreateParams): Promise<Deployment> {
    return this.t.json<Deployment>("POST", "/api/deployments", {
      json: body({
        name: params.name,
        model_id: params.modelId,
        backend: params.backend,
        replicas: params.replicas,
        gpu_count: params.gpuCount,
      }),
    });
  }

  list(params: Paging = {}): Promise<Page<Deployment>> {
    return this.t.json<Page<Deployment>>("GET", "/api/deployments", {
      query: { limit: params.limit, offset: params.offset },
    });
  }

  get(deploymentId: string): Promise<Deployment> {
    return this.t.json<Deployment>("GET", "/api/deployments/{deployment_id}", {
      path: { deployment_id: deploymentId },
    });
  }

  scale(deploymentId: string, replicas: number): Promise<Deployment> {
    return this.t.json<Deployment>("PATCH", "/api/deployments/{deployment_id}", {
      path: { deployment_id: deploymentId },
      json: { replicas },
    });
  }

  stop(deploymentId: string): Promise<Deployment> {
    return this.t.json<Deployment>("DELETE", "/api/deployments/{deployment_id}", {
      path: { deployment_id: deploymentId },
    });
  }

  /** A key that may call this deployment's endpoint only; its secret is in this answer only. */
  createKey(deploymentId: string, name: string): Promise<DeploymentKeyCreated> {
    return this.t.json<DeploymentKeyCreated>("POST", "/api/deployments/{deployment_id}/keys", {
      path: { deployment_id: deploymentId },
      json: { name },
    });
  }

  listKeys(deploymentId: string): Promise<DeploymentKey[]> {
    return this.t.json<DeploymentKey[]>("GET", "/api/deployments/{deployment_id}/keys", {
      path: { deployment_id: deploymentId },
    });
  }

  async revokeKey(deploymentId: string, keyId: string): Promise<void> {
    await this.t.request("DELETE", "/api/deployments/{deployment_id}/keys/{key_id}", {
      path: { deployment_id: deploymentId, key_id: keyId },
    });
  }

  /**
   * Calls the deployment's OpenAI-compatible API: `path` under `/v1`, e.g.
   * `chat/completions`. Answers the raw response (a streamed completion is read from it).
   */
  call(deploymentId: string, path: string, json?: unknown): Promise<Response> {
    const values = { deployment_id: deploymentId, path };
    return json === undefined
      ? this.t.request("GET", "/api/deployments/{deployment_id}/v1/{path}", { path: values })
      : this.t.request("POST", "/api/deployments/{deployment_id}/v1/{path}", { path: values, json });
  }
}

export interface EvaluationCreateParams {
  modelId: string;
  benchmark: Benchmark;
  /** The benchmark's options (see the README); sent as given. */
  config?: Record<string, unknown>;
}

export class Evaluations extends Resource {
  /** Starts an evaluation: a job through the scheduler, like any other GPU work. */
  create(params: EvaluationCreateParams): Promise<Evaluation> {
    return this.t.json<Evaluation>("POST", "/api/evaluations", {
      json: body({ model_id: params.modelId, benchmark: params.benchmark, config: params.config }),
    });
  }

  list(params: Paging & { modelId?: string; benchmark?: Benchmark } = {}): Promise<Page<Evaluation>> {
    return this.t.json<Page<Evaluation>>("GET", "/api/evaluations", {
      query: {
        model_id: params.modelId,
        benchmark: params.benchmark,
        limit: params.limit,
        offset: params.offset,
      },
    });
  }

  get(evaluationId: string): Promise<Evaluation> {
    return this.t.json<Evaluation>("GET", "/api/evaluations/{evaluation_id}", {
      path: { evaluation_id: evaluationId },
    });
  }
}

export interface LeaderboardParams {
  benchmark?: Benchmark;
  sort?: "accuracy" | "name" | "date";
  order?: "asc" | "desc";
}

export class LeaderboardResource extends Resource {
  get(params: LeaderboardParams = {}): Promise<LeaderboardBody> {
    return this.t.json<LeaderboardBody>("GET", "/api/leaderboard", {
      query: { benchmark: params.benchmark, sort: params.sort, order: params.order },
    });
  }

  /** The same table as CSV. */
  async csv(params: LeaderboardParams = {}): Promise<string> {
    const response = await this.t.request("GET", "/api/leaderboard", {
      query: { benchmark: params.benchmark, sort: params.sort, order: params.order, format: "csv" },
    });
    return response.text();
  }
}
