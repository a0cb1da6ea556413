import { setTimeout as wait } from "node:timers/promises";
import { describe, expect, test } from "vitest";
import { inject } from "vitest";

import {
  AuthenticationError,
  PermissionDeniedError,
  RateLimitError,
  SparkTrainerClient,
  ValidationError,
} from "../src/index.js";
import { ACCESS_TTL, RATE_WINDOW, STANDARD_LIMIT } from "./live-server.js";
import { adminClient, standardUser, unique, url } from "./helpers.js";

describe("authentication", () => {
  test("a wrong API key or password is an AuthenticationError", async () => {
    const badKey = new SparkTrainerClient({ baseUrl: url(), apiKey: "stk_wrong" });
    const error = await badKey.jobs.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error).toMatchObject({ status: 401, error: "Unauthorized" });

    const badPassword = new SparkTrainerClient({ baseUrl: url(), username: "admin", password: "nope-nope" });
    await expect(badPassword.users.me()).rejects.toBeInstanceOf(AuthenticationError);
  });

  test("a password login refreshes its token across an expiry", async () => {
    const client = new SparkTrainerClient({
      baseUrl: url(),
      username: "admin",
      password: inject("adminPassword"),
    });
    await client.login();
    const first = client.accessToken;
    expect((await client.users.me()).username).toBe("admin");
    // Past the token's whole lifetime: the next call must refresh first, not fail.
    await wait(ACCESS_TTL * 1000 + 500);
    expect((await client.users.me()).username).toBe("admin");
    expect(client.accessToken).not.toBe(first);

    // A raw request with the expired first token is refused: the refresh was needed.
    const stale = await fetch(`${url()}/api/auth/me`, { headers: { Authorization: `Bearer ${first}` } });
    expect(stale.status).toBe(401);

    await client.logout();
    expect(client.accessToken).toBeNull();
  });

  test("concurrent calls after an expiry share one refresh (a reused refresh token would revoke them all)", async () => {
    const renewals: string[] = [];
    const observed: typeof fetch = (input, init) => {
      const path = new URL(String(input)).pathname;
      if (path === "/api/auth/refresh" || path === "/api/auth/login") renewals.push(path);
      return fetch(input, init);
    };
    const client = new SparkTrainerClient({
      baseUrl: url(),
      username: "admin",
      password: inject("adminPassword"),
      fetch: observed,
    });
    await client.login();
    await wait(ACCESS_TTL * 1000 + 200);
    const answers = await Promise.all(Array.from({ length: 6 }, () => client.users.me()));
    expect(answers.map((u) => u.username)).toEqual(Array(6).fill("admin"));
    expect(renewals).toEqual(["/api/auth/login", "/api/auth/refresh"]);
  });

  test("API keys: create, use, list, revoke", async () => {
    const admin = adminClient();
    const created = await admin.apiKeys.create(unique("key"));
    const viaKey = new SparkTrainerClient({ baseUrl: url(), apiKey: created.key });
    expect((await viaKey.users.me()).username).toBe("admin");
    expect((await admin.apiKeys.list()).map((k) => k.id)).toContain(created.id);
    await admin.apiKeys.revoke(created.id);
    await expect(viaKey.users.me()).rejects.toBeInstanceOf(AuthenticationError);
  });

  test("a standard user may not list users (403); bad input is a ValidationError", async () => {
    const { username, password } = await standardUser();
    const client = new SparkTrainerClient({ baseUrl: url(), username, password });
    await expect(client.users.list()).rejects.toBeInstanceOf(PermissionDeniedError);
    const error = await adminClient()
      .jobs.create({ name: "x", command: "true", gpuCount: 99 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(/GPU/);
  });
});

describe("rate limits", () => {
  test("a 429 is a RateLimitError with retryAfter when retries are off", async () => {
    const { username, password } = await standardUser();
    const client = new SparkTrainerClient({ baseUrl: url(), username, password, retry: { maxRetries: 0 } });
    // Twice the window's allowance at once, so they all land in one window however slow
    // this machine is.
    const answers = await Promise.allSettled(Array.from({ length: 2 * STANDARD_LIMIT }, () => client.gpus.list()));
    const refused = answers.flatMap((a) => (a.status === "rejected" ? [a.reason as unknown] : []));
    expect(refused.length).toBeGreaterThan(0);
    const limited = refused[0];
    expect(limited).toBeInstanceOf(RateLimitError);
    const retryAfter = (limited as RateLimitError).retryAfter;
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(RATE_WINDOW);
  });

  test("the client waits out a 429 and retries, honouring Retry-After", async () => {
    const { username, password } = await standardUser();
    const statuses: number[] = [];
    const observed: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (String(input).endsWith("/api/gpus")) statuses.push(response.status);
      return response;
    };
    const client = new SparkTrainerClient({ baseUrl: url(), username, password, fetch: observed });
    // More calls at once than one window allows: each over the limit is answered 429, waits
    // for the next window and is sent again, so every call succeeds.
    const calls = STANDARD_LIMIT + 3;
    const answers = await Promise.all(Array.from({ length: calls }, () => client.gpus.list()));
    expect(answers.map((gpus) => gpus.length)).toEqual(Array(calls).fill(4));
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 200)).toHaveLength(calls);
  });
});
