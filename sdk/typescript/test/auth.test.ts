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
    let limited: unknown;
    for (let i = 0; i < STANDARD_LIMIT + 2 && limited === undefined; i += 1) {
      await client.gpus.list().catch((e: unknown) => {
        limited = e;
      });
    }
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
    // More calls than one window allows: each over the limit is answered 429, waits for the
    // next window and is sent again, so every call succeeds.
    for (let i = 0; i < STANDARD_LIMIT + 2; i += 1) {
      expect(await client.gpus.list()).toHaveLength(4);
    }
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 200)).toHaveLength(STANDARD_LIMIT + 2);
  });
});
