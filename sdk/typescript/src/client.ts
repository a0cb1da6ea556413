import { ApiKeys, Gpus, SystemMetricsResource, Users } from "./resources/account.js";
import { Experiments, Models } from "./resources/catalog.js";
import { Datasets } from "./resources/datasets.js";
import { Hpo } from "./resources/hpo.js";
import { Jobs } from "./resources/jobs.js";
import { Deployments, Evaluations, LeaderboardResource } from "./resources/serving.js";
import { RetryPolicy, type RetryOptions } from "./retry.js";
import type { WebSocketConstructor } from "./streams.js";
import { Auth, Transport } from "./transport.js";

export interface ClientOptions {
  /** e.g. `http://localhost:5001`. */
  baseUrl: string;
  /** An API key (`stk_…`), or an access token you manage yourself. */
  apiKey?: string;
  /** With `password`: the client logs in and refreshes its tokens before they expire. */
  username?: string;
  password?: string;
  /** Seconds to wait for a response's headers. Default 30. */
  timeout?: number;
  /** Retries of 429/503 answers and connection failures; `{ maxRetries: 0 }` turns them off. */
  retry?: RetryOptions;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
  /**
   * The WebSocket class for live metrics: default the global one (browsers, Node 22+); in
   * Node 20 pass `WebSocket` from the `ws` package, or use `@sparktrainer/sdk/node`. Null:
   * Server-Sent Events only.
   */
  WebSocket?: WebSocketConstructor | null;
}

/**
 * The SparkTrainer API.
 *
 * ```ts
 * const client = new SparkTrainerClient({ baseUrl: "http://localhost:5001", apiKey: "stk_…" });
 * const job = await client.jobs.create({ name: "train", command: "python train.py", gpuCount: 4 });
 * ```
 *
 * Arguments are camelCase and mapped to the API's snake_case fields; answers are the API's
 * JSON as the OpenAPI document describes it (see `types.ts`).
 */
export class SparkTrainerClient {
  readonly jobs: Jobs;
  readonly experiments: Experiments;
  readonly datasets: Datasets;
  readonly models: Models;
  readonly deployments: Deployments;
  readonly evaluations: Evaluations;
  readonly leaderboard: LeaderboardResource;
  readonly hpo: Hpo;
  readonly users: Users;
  readonly apiKeys: ApiKeys;
  readonly gpus: Gpus;
  readonly metrics: SystemMetricsResource;
  protected readonly transport: Transport;

  constructor(options: ClientOptions) {
    if (!options.baseUrl) throw new TypeError("baseUrl is required");
    const auth = new Auth(options.apiKey ?? null, options.username ?? null, options.password ?? null);
    this.transport = new Transport(options.baseUrl, auth, {
      timeout: options.timeout,
      retry: new RetryPolicy(options.retry),
      fetch: options.fetch,
    });
    const webSocket =
      options.WebSocket !== undefined
        ? options.WebSocket
        : ((globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? null);
    this.jobs = new Jobs(this.transport, webSocket);
    this.experiments = new Experiments(this.transport);
    this.datasets = new Datasets(this.transport);
    this.models = new Models(this.transport);
    this.deployments = new Deployments(this.transport);
    this.evaluations = new Evaluations(this.transport);
    this.leaderboard = new LeaderboardResource(this.transport);
    this.hpo = new Hpo(this.transport);
    this.users = new Users(this.transport);
    this.apiKeys = new ApiKeys(this.transport);
    this.gpus = new Gpus(this.transport);
    this.metrics = new SystemMetricsResource(this.transport);
  }

  get baseUrl(): string {
    return this.transport.baseUrl;
  }

  /** The current access token when logged in with a password (null with an API key). */
  get accessToken(): string | null {
    return this.transport.auth.accessToken;
  }

  /** Obtains tokens now rather than at the first call (password logins only). */
  async login(): Promise<void> {
    await this.transport.auth.credential(this.transport, true);
  }

  /** Revokes this client's refresh-token family (password logins only). */
  async logout(): Promise<void> {
    const refresh = this.transport.auth.refreshToken;
    if (refresh === null) return;
    await this.transport.request("POST", "/api/auth/logout", { json: { refresh_token: refresh } });
    this.transport.auth.forget();
  }

  /** `GET /healthz` (no credentials needed). */
  async health(): Promise<{ status: string }> {
    const response = await this.transport.send("GET", "/healthz", {}, false);
    return (await response.json()) as { status: string };
  }
}
