/**
 * A live `sparktrainer serve` for the TypeScript tests: a real process on a free port.
 *
 * SQLite in a temporary data directory, a virtual 4-GPU inventory, a 3-second access
 * token lifetime (so a refresh across an expiry is quick to see) and 3-second rate-limit
 * windows of 5 requests for standard users (so a 429's Retry-After is short). Tests get
 * the URL, the admin password and an admin API key through `inject`.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { TestProject } from "vitest/node";

export const ROOT = resolve(import.meta.dirname, "..", "..", "..");
export const PASSWORD = "correct horse battery staple";
export const ACCESS_TTL = 3;
export const RATE_WINDOW = 3;
export const STANDARD_LIMIT = 5;

declare module "vitest" {
  export interface ProvidedContext {
    serverUrl: string;
    adminPassword: string;
    adminApiKey: string;
  }
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => done(typeof address === "object" && address ? address.port : 0));
    });
  });
}

async function waitHealthy(url: string, process: ChildProcess, log: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (process.exitCode !== null) {
      throw new Error(`server exited: ${(await readFile(log, "utf8")).slice(-2000)}`);
    }
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((wake) => setTimeout(wake, 200));
  }
  throw new Error(`server did not answer in 60 s: ${(await readFile(log, "utf8")).slice(-2000)}`);
}

async function post(url: string, body: unknown, token?: string): Promise<Record<string, string>> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as Record<string, string>;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = await mkdtemp(join(tmpdir(), "sparktrainer-ts-"));
  const log = join(root, "server.log");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const venvBin = join(ROOT, ".venv", "bin");
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !name.startsWith("SPARKTRAINER_")) env[name] = value;
  }
  Object.assign(env, {
    SPARKTRAINER_DATA_DIR: join(root, "data"),
    SPARKTRAINER_ADMIN_PASSWORD: PASSWORD,
    SPARKTRAINER_SECRET_KEY: "ts-sdk-tests-".padEnd(64, "x"),
    SPARKTRAINER_GPUS: "4",
    SPARKTRAINER_ACCESS_TOKEN_TTL_SECONDS: String(ACCESS_TTL),
    SPARKTRAINER_RATE_LIMIT_WINDOW_SECONDS: String(RATE_WINDOW),
    SPARKTRAINER_RATE_LIMIT_STANDARD_PER_MINUTE: String(STANDARD_LIMIT),
    SPARKTRAINER_KILL_GRACE_SECONDS: "2",
    SPARKTRAINER_LOG_FORMAT: "text",
    // Jobs find the worktree's interpreter (with the Python SDK) as `python`.
    PATH: `${venvBin}:${process.env.PATH ?? ""}`,
  });
  const { openSync } = await import("node:fs");
  const out = openSync(log, "w");
  const server = spawn(join(venvBin, "sparktrainer"), ["serve", "--port", String(port)], {
    env,
    stdio: ["ignore", out, out],
  });
  try {
    await waitHealthy(url, server, log);
    const { access_token: token } = await post(`${url}/api/auth/login`, {
      username: "admin",
      password: PASSWORD,
    });
    const { key } = await post(`${url}/api/auth/api-keys`, { name: "ts-sdk-tests" }, token);
    project.provide("serverUrl", url);
    project.provide("adminPassword", PASSWORD);
    project.provide("adminApiKey", key as string);
  } catch (error) {
    server.kill("SIGKILL");
    throw error;
  }
  return async () => {
    const exited = new Promise((done) => server.once("exit", done));
    server.kill("SIGTERM");
    const timer = setTimeout(() => server.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
    await rm(root, { recursive: true, force: true });
  };
}
