/**
 * Live job metrics: `client.jobs.streamMetrics(jobId, callback)`.
 *
 * WebSocket first (`/ws/jobs/{job_id}/stream?ids=true&batch=true`: each message is an array
 * of the points of one server wake-up), Server-Sent Events when no
 * WebSocket is available or the socket cannot be opened (a proxy that refuses upgrades).
 * Every point carries the server's event id; a dropped connection is resumed after the
 * last id received (`?after=` on the socket, `Last-Event-ID` on SSE), so no point is
 * repeated or skipped.
 */

import { APIStatusError, SparkTrainerError, StreamError } from "./errors.js";
import { SSEParser, lines } from "./sse.js";
import type { Transport } from "./transport.js";
import { sleep } from "./retry.js";

/** One point as the job logged it: `point.step`, `point.loss`, `point["lr"]`. */
export interface MetricPoint {
  step: number;
  [metric: string]: number;
}

/** How the job ended: the stream's last message. */
export interface JobEnd {
  status: string;
  exitCode: number | null;
  reason: string | null;
}

/** The part of the WebSocket interface the client uses (browsers' and the `ws` package's). */
export interface WebSocketLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface StreamMetricsOptions {
  /** Start after this event id (0: the whole history). */
  after?: number;
  /** `auto` (default): WebSocket when there is one, SSE otherwise or when it fails. */
  via?: "auto" | "websocket" | "sse";
  /** Called once when the job has ended (after its last point). */
  onEnd?: (end: JobEnd) => void;
  /** Called when the stream fails for good (it then stops), or the callback threw. */
  onError?: (error: Error) => void;
  /** Failed reconnections in a row before giving up. Default 10. */
  maxReconnects?: number;
}

/** Stops the stream; also a handle on how it went. */
export interface Unsubscribe {
  (): void;
  /** The job's end; null when unsubscribed first; rejects when the stream fails for good. */
  readonly done: Promise<JobEnd | null>;
  /** The id of the last point delivered (resume a later stream with `after`). */
  readonly lastEventId: number;
  /** `websocket` or `sse`: what the stream is using now. */
  readonly via: "websocket" | "sse";
}

type Attempt = { end: JobEnd | null; progressed: boolean };

// Not in the OpenAPI document (it has no WebSocket routes); the server's README names it.
const ROUTE_WS = "/ws/jobs/{job_id}/stream";

export function streamMetrics(
  transport: Transport,
  webSocket: WebSocketConstructor | null,
  jobId: string,
  callback: (point: MetricPoint) => void,
  options: StreamMetricsOptions = {},
): Unsubscribe {
  const maxReconnects = options.maxReconnects ?? 10;
  const controller = new AbortController();
  let lastEventId = options.after ?? 0;
  let via: "websocket" | "sse" =
    options.via === "sse" || (options.via !== "websocket" && webSocket === null) ? "sse" : "websocket";
  if (via === "websocket" && webSocket === null) {
    throw new TypeError("no WebSocket: pass a WebSocket constructor in the client options");
  }

  const deliver = (id: number | null, point: MetricPoint): boolean => {
    if (id !== null) {
      if (id <= lastEventId) return false;
      lastEventId = id;
    }
    try {
      callback(point);
    } catch (error) {
      throw new CallbackFailure(error);
    }
    return true;
  };

  const viaSocket = (): Promise<Attempt & { opened: boolean }> =>
    new Promise((resolve, reject) => {
      void transport.auth.credential(transport).then((token) => {
        const query = { access_token: token, after: lastEventId, ids: "true", batch: "true" };
        const url = transport.url(ROUTE_WS, { job_id: jobId }, query).replace(/^http/, "ws");
        const socket = new (webSocket as WebSocketConstructor)(url);
        let opened = false;
        let progressed = false;
        let end: JobEnd | null = null;
        const stop = (): void => socket.close(1000, "unsubscribed");
        controller.signal.addEventListener("abort", stop, { once: true });
        socket.onopen = () => {
          opened = true;
        };
        socket.onmessage = (event) => {
          try {
            const parsed = JSON.parse(String(event.data)) as unknown;
            // `?batch=true` sends an array of points; a server without it, one per message.
            const messages = (Array.isArray(parsed) ? parsed : [parsed]) as Record<string, unknown>[];
            for (const message of messages) {
              if (message.event === "end") {
                end = readEnd(message);
                return;
              }
              // `?ids=true` wraps each point with its id; a server without it sends bare points.
              const id = typeof message.id === "number" ? message.id : null;
              const point = (id === null ? message : message.data) as MetricPoint;
              if (deliver(id, point)) progressed = true;
            }
          } catch (error) {
            controller.signal.removeEventListener("abort", stop);
            socket.close(1000, "callback failed");
            reject(error);
          }
        };
        socket.onerror = () => undefined; // the close that follows says what happened
        socket.onclose = () => {
          controller.signal.removeEventListener("abort", stop);
          resolve({ end, progressed, opened });
        };
      }, reject);
    });

  const viaSse = async (): Promise<Attempt> => {
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = String(lastEventId);
    const response = await transport.request("GET", "/api/jobs/{job_id}/stream", {
      path: { job_id: jobId },
      headers,
      signal: controller.signal,
    });
    let progressed = false;
    const parser = new SSEParser();
    if (response.body === null) return { end: null, progressed };
    for await (const line of lines(response.body)) {
      const event = parser.feed(line);
      if (event === null) continue;
      if (event.event === "end") return { end: readEnd(JSON.parse(event.data)), progressed };
      if (event.event !== "message" || !event.data) continue;
      const id = event.id !== null && /^\d+$/.test(event.id) ? Number(event.id) : null;
      if (deliver(id, JSON.parse(event.data) as MetricPoint)) progressed = true;
    }
    return { end: null, progressed };
  };

  const run = async (): Promise<JobEnd | null> => {
    let failures = 0;
    while (!controller.signal.aborted) {
      let attempt: Attempt;
      try {
        if (via === "websocket") {
          const result = await viaSocket();
          if (!result.opened && options.via !== "websocket" && !controller.signal.aborted) {
            // Refused before it opened: no upgrade through this proxy, or the request
            // itself is refused. SSE works in either case and answers a typed error.
            via = "sse";
            continue;
          }
          attempt = result;
        } else {
          attempt = await viaSse();
        }
      } catch (error) {
        if (controller.signal.aborted) return null;
        // The server's answer stands (404: not yours or gone; 401: credentials); only the
        // connection is worth another try.
        if (error instanceof CallbackFailure) throw error.error;
        if (error instanceof APIStatusError || !(error instanceof SparkTrainerError || isNetworkError(error))) {
          throw error;
        }
        failures += 1;
        if (failures > maxReconnects) {
          throw new StreamError(`metrics stream of ${jobId} lost after ${failures} attempts`, { cause: error });
        }
        await sleep(backoff(failures), controller.signal).catch(() => undefined);
        continue;
      }
      if (attempt.end !== null) return attempt.end;
      if (controller.signal.aborted) return null;
      // Closed without the job's end (a server restart, a proxy timeout): resume.
      failures = attempt.progressed ? 1 : failures + 1;
      if (failures > maxReconnects) {
        throw new StreamError(`metrics stream of ${jobId} keeps closing early`);
      }
      await sleep(backoff(failures), controller.signal).catch(() => undefined);
    }
    return null;
  };

  const done = run().then(
    (end) => {
      if (end !== null) options.onEnd?.(end);
      return end;
    },
    (error: unknown) => {
      // The callback's own errors come back as they were thrown.
      const failure =
        error instanceof Error
          ? error
          : new StreamError(`metrics stream of ${jobId} failed: ${String(error)}`, { cause: error });
      options.onError?.(failure);
      throw failure;
    },
  );
  // A caller that passes onError and never awaits `done` must not see an unhandled
  // rejection; one that awaits it still gets the error.
  done.catch(() => undefined);

  const unsubscribe = (() => controller.abort()) as Unsubscribe;
  Object.defineProperties(unsubscribe, {
    done: { value: done },
    lastEventId: { get: () => lastEventId },
    via: { get: () => via },
  });
  return unsubscribe;
}

function readEnd(message: Record<string, unknown>): JobEnd {
  return {
    status: String(message.status),
    exitCode: typeof message.exit_code === "number" ? message.exit_code : null,
    reason: typeof message.reason === "string" ? message.reason : null,
  };
}

/** Seconds before reconnection number `failures`: exponential, with jitter, at most 8. */
function backoff(failures: number): number {
  const base = Math.min(8, 0.25 * 2 ** (failures - 1));
  return base / 2 + Math.random() * (base / 2);
}

class CallbackFailure {
  constructor(readonly error: unknown) {}
}

function isNetworkError(error: unknown): boolean {
  // fetch rejects with a TypeError when the connection fails or drops mid-body.
  return error instanceof TypeError;
}
