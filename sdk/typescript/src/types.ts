/**
 * Names for the API's shapes, all from `generated/schema.ts` (openapi-typescript's output
 * for `sdk/openapi.json`). Responses keep the API's own field names (snake_case), so metric
 * names, tags and environment keys, which are data, are never rewritten.
 */

import type { components, paths } from "./generated/schema.js";

export type { components, paths };

type Schemas = components["schemas"];

export type Page<T> = { items: T[]; total: number; limit: number; offset: number };

export type TokenPair = Schemas["TokenPair"];
export type User = Schemas["UserRead"];
export type ApiKey = Schemas["ApiKeyRead"];
export type ApiKeyCreated = Schemas["ApiKeyCreated"];
export type Job = Schemas["JobRead"];
export type JobDetail = Schemas["JobDetail"];
export type JobEvent = Schemas["JobEventRead"];
export type JobStatus = Job["status"];
export type MetricsHistory = Schemas["MetricsHistory"];
export type MetricSeries = Schemas["MetricSeries"];
export type MetricsAccepted = Schemas["MetricsAccepted"];
export type Gpu = Schemas["GpuRead"];
export type SystemMetrics = Schemas["SystemMetricsRead"];
export type Dataset = Schemas["DatasetRead"];
export type DatasetDetail = Schemas["DatasetDetail"];
export type DatasetVersion = Schemas["DatasetVersionRead"];
export type DatasetVersionList = Schemas["DatasetVersionList"];
export type Experiment = Schemas["ExperimentRead"];
export type ExperimentDetail = Schemas["ExperimentDetail"];
export type Run = Schemas["RunRead"];
export type Model = Schemas["ModelRead"];
export type ModelDetail = Schemas["ModelDetail"];
export type Deployment = Schemas["DeploymentRead"];
export type DeploymentKey = Schemas["DeploymentKeyRead"];
export type DeploymentKeyCreated = Schemas["DeploymentKeyCreated"];
export type Evaluation = Schemas["EvaluationRead"];
export type Leaderboard = Schemas["Leaderboard"];
export type LeaderboardRow = Schemas["LeaderboardRow"];
export type Role = Schemas["UserCreate"]["role"];
export type Tier = Schemas["UserCreate"]["tier"];
export type Backend = Schemas["DeploymentCreate"]["backend"];
export type Benchmark = Schemas["EvaluationCreate"]["benchmark"];
export type Study = Schemas["StudyRead"];
export type StudyDetail = Schemas["StudyDetail"];
export type StudyStatus = Schemas["StudyStatus"];
export type Trial = Schemas["TrialRead"];
export type TrialState = Schemas["TrialState"];
/** One distribution of a search space, as sent (the server fills `log` and `step` when left out). */
export type SearchParam =
  | (Omit<Schemas["FloatParam"], "log" | "step"> & { log?: boolean; step?: number })
  | (Omit<Schemas["IntParam"], "log" | "step"> & { log?: boolean; step?: number })
  | Schemas["CategoricalParam"];

/** `(bytesDone, bytesTotal)`; the total is null when unknown. */
export type ProgressCallback = (done: number, total: number | null) => void;
