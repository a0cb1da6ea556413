import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";

import { NotFoundError } from "../src/index.js";
import { SparkTrainerClient } from "../src/node.js";
import { adminClient, unique, url } from "./helpers.js";
import { Proxy } from "./proxy.js";
import { inject } from "vitest";

const md5 = (bytes: Uint8Array): string => createHash("md5").update(bytes).digest("hex");

describe("datasets", () => {
  test("upload a file from disk with progress, then download it to a file", async () => {
    const client = adminClient();
    const dir = await mkdtemp(join(tmpdir(), "st-ds-"));
    const source = join(dir, "train.jsonl");
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(source, bytes);
    const name = unique("ds");

    const progress: [number, number | null][] = [];
    const dataset = await client.datasets.uploadFile(source, {
      name,
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(dataset.name).toBe(name);
    expect(dataset.latest_version).toMatchObject({ version: "v1.0.0", size: bytes.length, hash: md5(bytes) });
    // Streamed: progress came in steps, each further, ending at the file's size.
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.every(([done], i) => i === 0 || done > progress[i - 1]![0])).toBe(true);
    expect(progress.at(-1)).toEqual([bytes.length, bytes.length]);

    const target = join(dir, "copy.jsonl");
    const seen: number[] = [];
    await client.datasets.downloadToFile(dataset.id, target, { onProgress: (done) => seen.push(done) });
    expect(md5(await readFile(target))).toBe(md5(bytes));
    expect(seen.at(-1)).toBe(bytes.length);
  });

  test("a download resumes from the part file an interrupted one left", async () => {
    const client = adminClient();
    const dir = await mkdtemp(join(tmpdir(), "st-ds-"));
    const bytes = randomBytes(1024 * 1024);
    const dataset = await client.datasets.upload(new Blob([bytes]), { name: unique("resume"), streamed: false });
    const target = join(dir, "data.bin");
    const have = 400_000;
    await writeFile(`${target}.part`, bytes.subarray(0, have));

    const seen: number[] = [];
    await client.datasets.downloadToFile(dataset.id, target, { onProgress: (done) => seen.push(done) });
    expect(md5(await readFile(target))).toBe(md5(bytes));
    // Only the rest was fetched: the first progress report is already past the part file.
    expect(seen[0]).toBeGreaterThan(have);
  });

  test("a download cut midway resumes within the same call", async () => {
    const dir = await mkdtemp(join(tmpdir(), "st-ds-"));
    const bytes = randomBytes(16 * 1024 * 1024);
    const dataset = await adminClient().datasets.upload(new Blob([bytes]), { name: unique("cut") });
    const proxy = new Proxy(new URL(url()));
    try {
      const requests: (string | null)[] = [];
      const observed: typeof fetch = (input, init) => {
        requests.push(new Headers(init?.headers).get("Range"));
        return fetch(input, init);
      };
      const client = new SparkTrainerClient({
        baseUrl: await proxy.start(),
        apiKey: inject("adminApiKey"),
        fetch: observed,
        retry: { backoffBase: 0.05 },
      });
      const target = join(dir, "data.bin");
      let cut = false;
      await client.datasets.downloadToFile(dataset.id, target, {
        onProgress: (done) => {
          if (!cut && done >= 1024 * 1024) {
            cut = true;
            proxy.cut();
          }
        },
      });
      expect(md5(await readFile(target))).toBe(md5(bytes));
      // The second request asked for the rest only.
      expect(requests).toHaveLength(2);
      expect(requests[0]).toBeNull();
      expect(requests[1]).toMatch(/^bytes=\d+-$/);
    } finally {
      await proxy.close();
    }
  });

  test("versions, download into memory, list; unknown ids are NotFoundError", async () => {
    const client = adminClient();
    const name = unique("mem");
    const first = await client.datasets.upload(new Blob(["one\n"]), { name });
    await client.datasets.upload(new Blob(["two\n"]), { name });
    const versions = await client.datasets.versions(first.id);
    expect(versions.versions.map((v) => v.version).sort()).toEqual(["v1.0.0", "v1.1.0"]);

    const latest = new TextDecoder().decode(await client.datasets.download(first.id));
    expect(latest).toBe("two\n");
    const v1 = await client.datasets.download(first.id, { version: "v1.0.0" });
    expect(new TextDecoder().decode(v1)).toBe("one\n");

    const listed = await client.datasets.list({ name });
    expect(listed.items.map((d) => d.id)).toEqual([first.id]);
    await expect(client.datasets.get("ds-doesnotexist")).rejects.toBeInstanceOf(NotFoundError);
  });
});
