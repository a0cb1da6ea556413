import { describe, expect, test } from "vitest";

import { ConflictError, NotFoundError, ValidationError } from "../src/index.js";
import { adminClient, unique } from "./helpers.js";

// Each trial reports its parameter as its loss, so the best of the grid {1, 2} is 1.
const TRIAL = `python -c "import sys, sparktrainer; sparktrainer.log({'loss': float(sys.argv[1])})" @@x@@`;

describe("hpo", () => {
  test("create a study, wait for its trials, get, list, then cancel is a conflict", async () => {
    const client = adminClient();
    const name = unique("study");
    const created = await client.hpo.create({
      name,
      searchSpace: { x: { type: "categorical", choices: [1, 2] } },
      nTrials: 2,
      command: TRIAL,
      sampler: "grid",
      gpuCount: 0,
    });
    expect(created).toMatchObject({ name, objective: "minimize", metric: "loss", n_trials_requested: 2 });
    expect(created.sampler).toBe("grid");

    const done = await client.hpo.wait(created.id, { pollSeconds: 0.2 });
    expect(done.status).toBe("completed");
    expect(done.n_trials).toBe(2);
    expect(done.best_value).toBe(1);
    expect(done.best_params).toEqual({ x: 1 });
    const trials = [...done.trials].sort((a, b) => a.number - b.number);
    expect(trials.map((t) => t.state)).toEqual(["COMPLETE", "COMPLETE"]);
    expect(trials.map((t) => t.value).sort()).toEqual([1, 2]);
    for (const trial of trials) {
      expect(trial.value).toBe(trial.params.x);
      expect((await client.jobs.get(trial.job_id)).status).toBe("completed");
    }

    const listed = await client.hpo.list({ limit: 200 });
    expect(listed.items.find((s) => s.id === created.id)).toMatchObject({
      status: "completed",
      n_trials: 2,
      best_value: 1,
    });

    await expect(client.hpo.cancel(created.id)).rejects.toBeInstanceOf(ConflictError);
    expect((await client.hpo.get(created.id)).status).toBe("completed");
  });

  test("a bad search space is a ValidationError naming the field; an unknown study is not found", async () => {
    const client = adminClient();
    const name = unique("bad-study");
    const error = await client.hpo
      .create({
        name,
        searchSpace: { lr: { type: "float", low: 0, high: 1, log: true } },
        nTrials: 2,
        command: "true @@lr@@",
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toContain("search_space.lr.low");
    expect((await client.hpo.list({ limit: 200 })).items.map((s) => s.name)).not.toContain(name);
    await expect(client.hpo.get("study-doesnotexist")).rejects.toBeInstanceOf(NotFoundError);
  });
});
