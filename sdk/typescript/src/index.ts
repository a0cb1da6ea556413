/**
 * `@sparktrainer/sdk`: the SparkTrainer API from TypeScript, in browsers and Node 20+.
 *
 * This entry uses only web APIs (fetch, WebSocket, ReadableStream); Node-only helpers
 * (the `ws` WebSocket, files on disk) are in `@sparktrainer/sdk/node`.
 */

export { SparkTrainerClient, type ClientOptions } from "./client.js";
export * from "./errors.js";
export { RetryPolicy, type RetryOptions } from "./retry.js";
export type {
  JobEnd,
  MetricPoint,
  StreamMetricsOptions,
  Unsubscribe,
  WebSocketConstructor,
  WebSocketLike,
} from "./streams.js";
export type { JobCreateParams, JobListParams, JobLogsParams, JobMetricsParams, Jobs } from "./resources/jobs.js";
export type {
  ApiKeys,
  Gpus,
  SystemMetricsResource,
  UserCreateParams,
  UserUpdateParams,
  Users,
} from "./resources/account.js";
export type { Paging } from "./resources/base.js";
export type {
  ExperimentCreateParams,
  ExperimentListParams,
  Experiments,
  ModelListParams,
  Models,
  RunListParams,
} from "./resources/catalog.js";
export type { DatasetDownloadParams, DatasetUploadParams, Datasets } from "./resources/datasets.js";
export type { Download } from "./resources/files.js";
export type { Hpo, StudyCreateParams } from "./resources/hpo.js";
export type {
  DeploymentCreateParams,
  Deployments,
  EvaluationCreateParams,
  Evaluations,
  LeaderboardParams,
  LeaderboardResource,
} from "./resources/serving.js";
export * from "./types.js";
export { VERSION } from "./version.js";
