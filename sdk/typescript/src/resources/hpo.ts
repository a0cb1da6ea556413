import { sleep } from "../retry.js";
import type { Page, SearchParam, Study, StudyDetail } from "../types.js";
import { Resource, body, type Paging } from "./base.js";

export interface StudyCreateParams {
  name: string;
  /** Parameter name → distribution: `{ type: "float", low, high, log?, step? }`, `int`, `categorical`. */
  searchSpace: Record<string, SearchParam>;
  /** Trials to run in all. */
  nTrials: number;
  /** Each trial's command (`/bin/sh -c`); `@@name@@` becomes the trial's value of `name`, shell-quoted. */
  command: string;
  /** Server default `minimize`. */
  objective?: "minimize" | "maximize";
  /** Trials pending or running at once (server default 1). */
  parallelism?: number;
  /** The metric reported with `sparktrainer.log` that is the objective (server default `loss`). */
  metric?: string;
  /** Which reported value counts: the `last` (server default) or the `best` by objective. */
  metricValue?: "last" | "best";
  /** GPUs per trial (server default 1). */
  gpuCount?: number;
  sampler?: "tpe" | "random" | "grid" | "cmaes";
  seed?: number;
  pruner?: "none" | "median" | "hyperband";
  prunerStartupTrials?: number;
  prunerWarmupSteps?: number;
  /** Run the trials in this experiment; default one made for the study. */
  experimentId?: string;
  datasetId?: string;
  datasetVersion?: string;
  /** Extra environment variables of every trial (keys are sent as given). */
  environment?: Record<string, string>;
  /** Per trial. */
  timeoutSeconds?: number;
}

const FINAL: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

/** Hyperparameter studies (Optuna): each trial is a job through the one scheduler. */
export class Hpo extends Resource {
  create(params: StudyCreateParams): Promise<StudyDetail> {
    return this.t.json<StudyDetail>("POST", "/api/hpo/studies", {
      json: body({
        name: params.name,
        search_space: params.searchSpace,
        n_trials: params.nTrials,
        command: params.command,
        objective: params.objective,
        parallelism: params.parallelism,
        metric: params.metric,
        metric_value: params.metricValue,
        gpu_count: params.gpuCount,
        sampler: params.sampler,
        seed: params.seed,
        pruner: params.pruner,
        pruner_startup_trials: params.prunerStartupTrials,
        pruner_warmup_steps: params.prunerWarmupSteps,
        experiment_id: params.experimentId,
        dataset_id: params.datasetId,
        dataset_version: params.datasetVersion,
        environment: params.environment,
        timeout_seconds: params.timeoutSeconds,
      }),
    });
  }

  list(params: Paging = {}): Promise<Page<Study>> {
    return this.t.json<Page<Study>>("GET", "/api/hpo/studies", {
      query: { limit: params.limit, offset: params.offset },
    });
  }

  /** The study with its trials, best value and parameters, and parameter importance. */
  get(studyId: string): Promise<StudyDetail> {
    return this.t.json<StudyDetail>("GET", "/api/hpo/studies/{study_id}", { path: { study_id: studyId } });
  }

  /** Cancels its pending trials and stops its running ones; a study that has ended is a ConflictError. */
  cancel(studyId: string): Promise<StudyDetail> {
    return this.t.json<StudyDetail>("POST", "/api/hpo/studies/{study_id}/cancel", {
      path: { study_id: studyId },
    });
  }

  /** Waits until the study has ended (completed, failed or cancelled) and answers it. */
  async wait(studyId: string, options: { pollSeconds?: number; signal?: AbortSignal } = {}): Promise<StudyDetail> {
    for (;;) {
      const study = await this.get(studyId);
      if (FINAL.has(study.status)) return study;
      await sleep(options.pollSeconds ?? 1, options.signal);
    }
  }
}
