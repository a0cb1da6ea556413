import { afterEach, describe, expect, inject, test } from "vitest";

import { SparkTrainerClient } from "../src/node.js";
import { APIConnectionError, type MetricPoint } from "../src/index.js";
import { adminClient, loggingJob, unique, url } from "./helpers.js";
import { Proxy } from "./proxy.js";

const COUNT = 8;
const expected = Array.from({ length: COUNT }, (_, step) => ({ step, loss: 1 / (step + 1) }));

let proxy: Proxy | null = null;
afterEach(async () => {
  await proxy?.close();
  proxy = null;
});

describe("streams survive a dropped connection", () => {
  for (const via of ["websocket", "sse"] as const) {
    test(`${via}: resumes after the last event id, nothing repeated or skipped`, async () => {
      proxy = new Proxy(new URL(url()));
      const client = new SparkTrainerClient({ baseUrl: await proxy.start(), apiKey: inject("adminApiKey") });
      const job = await adminClient().jobs.create({ name: unique(`drop-${via}`), command: loggingJob(COUNT, 0.3) });
      const points: MetricPoint[] = [];
      let cut = false;
      const stop = client.jobs.streamMetrics(
        job.id,
        (point) => {
          points.push(point);
          if (points.length === 3 && !cut) {
            cut = true;
            proxy?.cut();
          }
        },
        { via },
      );
      expect(await stop.done).toMatchObject({ status: "completed" });
      expect(cut).toBe(true);
      expect(points).toEqual(expected);
      expect(stop.via).toBe(via);
    });
  }
});

describe("retries", () => {
  test("connection failures are retried, then an APIConnectionError", async () => {
    proxy = new Proxy(new URL(url()));
    const base = await proxy.start();
    await proxy.close(); // nothing listens there any more
    proxy = null;
    let attempts = 0;
    const counting: typeof fetch = (input, init) => {
      attempts += 1;
      return fetch(input, init);
    };
    const client = new SparkTrainerClient({
      baseUrl: base,
      apiKey: "stk_unused",
      fetch: counting,
      retry: { maxRetries: 2, backoffBase: 0.05 },
    });
    // Even a POST: a refused connection never reached the server.
    const error = await client.jobs.create({ name: "x", command: "true" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(APIConnectionError);
    expect(attempts).toBe(3);
  });
});
