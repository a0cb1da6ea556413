/**
 * The spec's TypeScript example (copied verbatim into the README) runs as written: in a
 * Node 20 process of its own, importing the built package by its name.
 *
 * Only the two placeholders change: the base URL (the test's server is not on 5001) and
 * `'your-api-key'`. The server has a virtual 4-GPU inventory, so `gpuCount: 4` runs.
 */

import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, test } from "vitest";

import { ROOT } from "./live-server.js";
import { adminClient, loggingJob, url } from "./helpers.js";

const PACKAGE = resolve(import.meta.dirname, "..");

async function specExample(): Promise<string> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const section = readme.split("### TypeScript SDK")[1] ?? "";
  const code = /```typescript\n([\s\S]*?)```/.exec(section)?.[1];
  if (code === undefined) throw new Error("no TypeScript example in the README");
  return code;
}

/** Runs `code` as an ES module inside the package, so `@sparktrainer/sdk` resolves to it. */
async function run(code: string): Promise<string> {
  const source = code
    .replace("'http://localhost:5001'", JSON.stringify(url()))
    .replace("'your-api-key'", JSON.stringify(inject("adminApiKey")));
  const dir = await mkdtemp(join(PACKAGE, ".example-"));
  try {
    await writeFile(join(dir, "example.mjs"), source);
    const { stdout } = await promisify(execFile)(process.execPath, [join(dir, "example.mjs")], {
      timeout: 60_000,
    });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("the spec's TypeScript example", () => {
  test("runs as written", async () => {
    const code = await specExample();
    expect(code).toContain("client.jobs.create({\n  name: 'my-training-job'"); // it is the spec's
    expect(await run(code)).toBe(""); // `python train.py` finds no train.py: no points
    const jobs = await adminClient().jobs.list({ limit: 200 });
    const job = jobs.items.find((j) => j.name === "my-training-job");
    expect(job).toBeDefined();
    const detail = await adminClient().jobs.get(job?.id ?? "");
    expect(detail.gpu_count).toBe(4);
    expect([...(detail.gpus ?? [])].sort()).toEqual([0, 1, 2, 3]);
    // The process exited by itself: the stream ended because the job ended.
    expect(detail.status).toBe("failed");
  });

  test("prints each step as it comes", async () => {
    const code = (await specExample()).replace("'python train.py'", JSON.stringify(loggingJob(3)));
    expect((await run(code)).split("\n")).toEqual([
      "Step 0: loss=1",
      "Step 1: loss=0.5",
      `Step 2: loss=${1 / 3}`,
      "",
    ]);
  });

  test("the same from @sparktrainer/sdk/node, streaming over the ws package's WebSocket", async () => {
    const code = (await specExample())
      .replace("from '@sparktrainer/sdk'", "from '@sparktrainer/sdk/node'")
      .replace("'python train.py'", JSON.stringify(loggingJob(2)))
      .replace("client.jobs.streamMetrics(job.id, (metrics) => {", "const stop = client.jobs.streamMetrics(job.id, (metrics) => {")
      .concat("\nawait stop.done;\nconsole.log(stop.via);\n");
    expect((await run(code)).split("\n")).toEqual(["Step 0: loss=1", "Step 1: loss=0.5", "websocket", ""]);
  });
});
