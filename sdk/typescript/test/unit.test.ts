/** The parts that do no I/O: error mapping, retry delays, SSE parsing, route expansion. */

import { describe, expect, test } from "vitest";

import {
  APIStatusError,
  ConflictError,
  NotFoundError,
  RateLimitError,
  RetryPolicy,
  ServerError,
  ServiceUnavailableError,
  SparkTrainerError,
  ValidationError,
  errorFromResponse,
  parseRetryAfter,
} from "../src/index.js";
import { SSEParser, lines } from "../src/sse.js";
import { expand } from "../src/transport.js";

describe("errors", () => {
  test("the error JSON becomes the class of its status", () => {
    const body = JSON.stringify({ error: "Conflict", message: "job has ended", status: 409 });
    const error = errorFromResponse(409, {}, body);
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toBeInstanceOf(APIStatusError);
    expect(error).toBeInstanceOf(SparkTrainerError);
    expect(error).toMatchObject({ status: 409, error: "Conflict", message: "job has ended", name: "ConflictError" });
    expect(errorFromResponse(422, {}, "{}")).toBeInstanceOf(ValidationError);
    expect(errorFromResponse(404, {}, "")).toBeInstanceOf(NotFoundError);
    expect(errorFromResponse(503, {}, "")).toBeInstanceOf(ServiceUnavailableError);
    expect(errorFromResponse(502, {}, "<html>bad gateway</html>")).toMatchObject({
      status: 502,
      message: "<html>bad gateway</html>",
    });
    expect(errorFromResponse(502, {}, "")).toBeInstanceOf(ServerError);
  });

  test("RateLimitError.retryAfter reads seconds or an HTTP date", () => {
    expect((errorFromResponse(429, { "retry-after": "7" }, "") as RateLimitError).retryAfter).toBe(7);
    const date = new Date(Date.now() + 10_000).toUTCString();
    expect(parseRetryAfter(date)).toBeGreaterThan(8);
    expect(parseRetryAfter("soon")).toBeNull();
    expect((errorFromResponse(429, {}, "") as RateLimitError).retryAfter).toBeNull();
  });
});

describe("RetryPolicy", () => {
  test("backoff grows with jitter, is bounded, and gives up after maxRetries", () => {
    const policy = new RetryPolicy({ maxRetries: 5, backoffBase: 1, backoffMax: 4 });
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const full = Math.min(4, 2 ** (attempt - 1));
      const delay = policy.delay(attempt) as number;
      expect(delay).toBeGreaterThanOrEqual(full / 2);
      expect(delay).toBeLessThanOrEqual(full);
    }
    expect(policy.delay(6)).toBeNull();
  });

  test("Retry-After is honoured, unless longer than maxRetryAfter", () => {
    const policy = new RetryPolicy({ maxRetryAfter: 30 });
    const delay = policy.delay(1, "3") as number;
    expect(delay).toBeGreaterThanOrEqual(3);
    expect(delay).toBeLessThanOrEqual(3.5);
    expect(policy.delay(1, "120")).toBeNull();
    expect(new RetryPolicy({ maxRetries: 0 }).delay(1, "1")).toBeNull();
  });
});

describe("SSE", () => {
  test("events with ids, named events and comments", () => {
    const parser = new SSEParser();
    const feed = ["retry: 2000", "", ": keep-alive", "", "id: 4", "data: {\"step\": 1}", "", "event: end", "data: {}", ""];
    const events = feed.map((line) => parser.feed(line)).filter((e) => e !== null);
    expect(events).toEqual([
      { event: "message", data: '{"step": 1}', id: "4" },
      { event: "end", data: "{}", id: null },
    ]);
  });

  test("lines are split across chunks and multi-byte characters", async () => {
    const bytes = new TextEncoder().encode("id: 1\r\ndata: é\n\nlast");
    const chunks = [bytes.slice(0, 6), bytes.slice(6, 14), bytes.slice(14)];
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk);
        controller.close();
      },
    });
    const seen: string[] = [];
    for await (const line of lines(body)) seen.push(line);
    expect(seen).toEqual(["id: 1", "data: é", "", "last"]);
  });
});

describe("routes", () => {
  test("parameters are percent-encoded; a model file path keeps its slashes", () => {
    expect(expand("/api/jobs/{job_id}", { job_id: "a/b?c" })).toBe("/api/jobs/a%2Fb%3Fc");
    expect(expand("/api/models/{model_id}/files/{path}", { model_id: "m", path: "dir/w b.bin" })).toBe(
      "/api/models/m/files/dir/w%20b.bin",
    );
    expect(() => expand("/api/jobs/{job_id}", {})).toThrow(TypeError);
  });
});
