import { describe, expect, test } from "vitest";

import { ConflictError, NotFoundError, SparkTrainerClient as WebClient } from "../src/index.js";
import type { MetricPoint } from "../src/index.js";
import { adminClient, loggingJob, unique, url } from "./helpers.js";
import { inject } from "vitest";

const expected = (count: number): MetricPoint[] =>
  Array.from({ length: count }, (_, step) => ({ step, loss: 1 / (step + 1) }));

describe("jobs", () => {
  test("create, list, get and cancel a job", async () => {
    const client = adminClient();
    const name = unique("sleeper");
    const job = await client.jobs.create({ name, command: "sleep 60", gpuCount: 2, priority: 5 });
    expect(job).toMatchObject({ name, status: "pending", gpu_count: 2, priority: 5 });

    const listed = await client.jobs.list({ limit: 200 });
    expect(listed.items.map((j) => j.id)).toContain(job.id);

    const cancelled = await client.jobs.cancel(job.id);
    expect(cancelled.id).toBe(job.id);
    const detail = await client.jobs.wait(job.id, { pollSeconds: 0.2 });
    expect(detail.status).toBe("cancelled");
    expect(detail.events.map((e) => e.to_status)).toContain("cancelled");

    // Cancelling a job that has ended is a conflict; an unknown job is not found.
    await expect(client.jobs.cancel(job.id)).rejects.toBeInstanceOf(ConflictError);
    const missing = await client.jobs.get("job-doesnotexist").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing).toMatchObject({ status: 404, error: "Not Found" });
  });

  test("camelCase arguments reach the API as its snake_case fields", async () => {
    const client = adminClient();
    const job = await client.jobs.create({
      name: unique("env"),
      command: "true",
      gpuCount: 1,
      timeoutSeconds: 120,
      environment: { MY_FLAG: "on" },
    });
    const detail = await client.jobs.get(job.id);
    expect(detail).toMatchObject({ gpu_count: 1, timeout_seconds: 120, environment: { MY_FLAG: "on" } });
  });

  test("streamMetrics over WebSocket: history, live points, then the end", async () => {
    const client = adminClient();
    const job = await client.jobs.create({ name: unique("ws"), command: loggingJob(6, 0.2) });
    const points: MetricPoint[] = [];
    const stop = client.jobs.streamMetrics(job.id, (point) => points.push(point));
    expect(stop.via).toBe("websocket");
    const end = await stop.done;
    expect(end).toEqual({ status: "completed", exitCode: 0, reason: null });
    expect(points).toEqual(expected(6));
    expect(stop.lastEventId).toBe(6);
    expect(stop.via).toBe("websocket");
  });

  test("streamMetrics over SSE where there is no WebSocket, resuming after an id", async () => {
    const client = new WebClient({ baseUrl: url(), apiKey: inject("adminApiKey"), WebSocket: null });
    const job = await client.jobs.create({ name: unique("sse"), command: loggingJob(5) });
    const points: MetricPoint[] = [];
    const stop = client.jobs.streamMetrics(job.id, (point) => points.push(point));
    expect(stop.via).toBe("sse");
    expect(await stop.done).toMatchObject({ status: "completed" });
    expect(points).toEqual(expected(5));

    // A later subscriber resuming after event 3 gets 4 and 5 only (on both transports).
    for (const via of ["sse", "websocket"] as const) {
      const rest: MetricPoint[] = [];
      const resumed = adminClient().jobs.streamMetrics(job.id, (p) => rest.push(p), { after: 3, via });
      await resumed.done;
      expect(rest).toEqual(expected(5).slice(3));
    }
  });

  test("unsubscribing stops the stream; done answers null", async () => {
    const client = adminClient();
    const job = await client.jobs.create({ name: unique("long"), command: loggingJob(100, 0.1) });
    const points: MetricPoint[] = [];
    let stop: ReturnType<typeof client.jobs.streamMetrics> | undefined;
    const first = new Promise<void>((resolve) => {
      stop = client.jobs.streamMetrics(job.id, (point) => {
        points.push(point);
        resolve();
      });
    });
    await first;
    stop?.();
    expect(await stop?.done).toBeNull();
    const seen = points.length;
    await client.jobs.cancel(job.id);
    expect(points.length).toBe(seen);
  });

  test("logs: the whole text, a tail, and followed as written until the job ends", async () => {
    const client = adminClient();
    const command = `for i in 1 2 3 4 5; do echo "line $i é"; sleep 0.2; done`;
    const job = await client.jobs.create({ name: unique("logs"), command });
    let followed = "";
    for await (const text of client.jobs.followLogs(job.id)) followed += text;
    const lines = [1, 2, 3, 4, 5].map((i) => `line ${i} é\n`).join("");
    expect(followed).toBe(lines);
    expect(await client.jobs.logs(job.id)).toBe(lines);
    expect(await client.jobs.logs(job.id, { tail: 2 })).toBe("line 4 é\nline 5 é\n");
    expect(await client.jobs.logs(job.id, { stream: "stderr" })).toBe("");
  });

  test("a stream of someone else's or an unknown job fails with NotFoundError", async () => {
    const client = adminClient();
    const errors: unknown[] = [];
    const stop = client.jobs.streamMetrics("job-doesnotexist", () => undefined, {
      onError: (error) => errors.push(error),
    });
    await expect(stop.done).rejects.toBeInstanceOf(NotFoundError);
    // The refused socket fell back to SSE, which says why.
    expect(stop.via).toBe("sse");
    expect(errors).toHaveLength(1);
  });
});
