/**
 * The browser entry in a real browser (headless Chromium): the built `dist/` is loaded as
 * ES modules by a page, with the page's own fetch and WebSocket, against the live server.
 *
 * A small Node server serves the page and `dist/` and passes every other request (and
 * WebSocket upgrade) through to the live server, so the page and the API share an origin
 * as they do behind the dashboard. Chromium is Debian's (`apt-get install chromium`);
 * outside CI a machine without it skips this file, under CI=true it fails.
 */

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import { connect } from "node:net";
import { join, normalize, resolve } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";

import { loggingJob, url } from "./helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DIST = resolve(import.meta.dirname, "..", "dist");
const available = existsSync(CHROMIUM);
if (!available && process.env.CI === "true") {
  throw new Error(`${CHROMIUM} not found: install chromium (the browser test runs under CI)`);
}

// The scenario runs in the page as plain JavaScript: what a dashboard would write.
const PAGE = `<!doctype html><title>sdk</title>
<script type="module">
import * as sdk from "/sdk/index.js";
window.scenario = async (apiKey, command) => {
  const client = new sdk.SparkTrainerClient({ baseUrl: location.origin, apiKey });
  const job = await client.jobs.create({ name: "in-a-browser", command, gpuCount: 2 });
  const points = [];
  const stop = client.jobs.streamMetrics(job.id, (p) => points.push(p));
  const end = await stop.done;
  const progress = [];
  const dataset = await client.datasets.upload(new File(["hello browser\\n"], "hello.txt"), {
    name: "browser-data",
    onProgress: (done) => progress.push(done),
  });
  const text = new TextDecoder().decode(await client.datasets.download(dataset.id));
  const missing = await client.jobs.get("job-nope").catch((e) => e);
  return {
    via: stop.via, end, points, progress, text,
    version: dataset.latest_version.version,
    notFound: missing instanceof sdk.NotFoundError,
    errorName: missing.name,
  };
};
window.ready = true;
</script>`;

function pageServer(target: URL): Server {
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    if (path === "/") {
      res.writeHead(200, { "Content-Type": "text/html" }).end(PAGE);
      return;
    }
    if (path.startsWith("/sdk/")) {
      // Only files under dist/: the name is resolved and checked, never trusted.
      const file = normalize(join(DIST, path.slice("/sdk/".length)));
      if (!file.startsWith(DIST)) {
        res.writeHead(404).end();
        return;
      }
      readFile(file).then(
        (body) => res.writeHead(200, { "Content-Type": "text/javascript" }).end(body),
        () => res.writeHead(404).end(),
      );
      return;
    }
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  server.on("upgrade", (req, socket, head) => {
    const upstream = connect(Number(target.port), target.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    for (const s of [socket, upstream]) s.on("error", () => undefined);
  });
  return server;
}

describe.skipIf(!available)("in a browser", () => {
  let server: Server;
  let origin = "";

  beforeAll(async () => {
    server = pageServer(new URL(url()));
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const address = server.address();
    origin = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  });

  test("jobs, streamMetrics over the page's WebSocket, upload and download, typed errors", async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    try {
      const page = await browser.newPage();
      await page.goto(origin);
      await page.waitForFunction(() => (window as { ready?: boolean }).ready === true);
      const result: unknown = await page.evaluate(
        ([apiKey, command]) =>
          (window as unknown as { scenario(a: string, c: string): Promise<unknown> }).scenario(apiKey, command),
        [inject("adminApiKey"), loggingJob(3)] as const,
      );
      expect(result).toEqual({
        via: "websocket",
        end: { status: "completed", exitCode: 0, reason: null },
        points: [0, 1, 2].map((step) => ({ step, loss: 1 / (step + 1) })),
        version: "v1.0.0",
        progress: [14],
        text: "hello browser\n",
        notFound: true,
        errorName: "NotFoundError",
      });
    } finally {
      await browser.close();
    }
  });
});
