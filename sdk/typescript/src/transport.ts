/**
 * HTTP for the client: authentication, token refresh, retries, typed errors.
 *
 * Uses the global `fetch` (browsers, Node 18+) or one given in the options. Every call names
 * its route exactly as the OpenAPI document spells it (`/api/jobs/{job_id}`), with the path
 * parameters given apart; the route-drift test reads those literals.
 */

import {
  APIConnectionError,
  APITimeoutError,
  AuthenticationError,
  errorFromResponse,
} from "./errors.js";
import { IDEMPOTENT, RETRY_STATUSES, RetryPolicy, sleep } from "./retry.js";

export type QueryValue = string | number | boolean | null | undefined | readonly (string | number)[];

export interface RequestOptions {
  /** Values of the route's `{name}` parameters, percent-encoded here. */
  path?: Record<string, string>;
  /** Query parameters; null and undefined are left out, arrays repeat the name. */
  query?: Record<string, QueryValue>;
  /** A JSON body (sent with `Content-Type: application/json`). */
  json?: unknown;
  /**
   * Builds a fresh body for every attempt (a stream cannot be sent twice). A streamed body
   * calls `touch` as it is read: the timeout then counts from the last byte sent, so a long
   * upload is not cut off while it makes progress.
   */
  body?: (touch: () => void) => BodyInit;
  /** Seconds to wait for the answer's headers, instead of the client's; null: no limit. */
  timeout?: number | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

interface TokenResponse {
  access_token: string;
  refresh_token: string;
  expires_in?: number;
}

/**
 * An API key (or access token) as given, or a username and password that are exchanged for
 * tokens, refreshed before they expire (and once more if the server still says 401).
 */
export class Auth {
  accessToken: string | null = null;
  refreshToken: string | null = null;
  private expiresAt = 0;
  private lifetime = 0;
  private renewing: Promise<void> | null = null;

  constructor(
    readonly apiKey: string | null,
    private readonly username: string | null,
    private readonly password: string | null,
  ) {
    if (apiKey === null && (username === null || password === null)) {
      throw new TypeError("give apiKey, or username and password");
    }
  }

  get renewable(): boolean {
    return this.apiKey === null;
  }

  /** The bearer credential for the next request (the API key, or a fresh access token). */
  async credential(transport: Transport, force = false): Promise<string> {
    if (this.apiKey !== null) return this.apiKey;
    if (force || !this.fresh()) {
      // One renewal at a time: concurrent requests wait for the same one.
      this.renewing ??= this.renew(transport).finally(() => {
        this.renewing = null;
      });
      await this.renewing;
    }
    return this.accessToken as string;
  }

  private fresh(): boolean {
    // Renew a fifth of the lifetime early (at most a minute), so a request never leaves
    // with a token that expires on its way.
    const margin = Math.min(60, this.lifetime / 5) * 1000;
    return this.accessToken !== null && Date.now() < this.expiresAt - margin;
  }

  private update(tokens: TokenResponse): void {
    this.accessToken = tokens.access_token;
    this.refreshToken = tokens.refresh_token;
    this.lifetime = tokens.expires_in ?? 3600;
    this.expiresAt = Date.now() + this.lifetime * 1000;
  }

  private async renew(transport: Transport): Promise<void> {
    if (this.refreshToken !== null) {
      try {
        const response = await transport.send("POST", "/api/auth/refresh", {
          json: { refresh_token: this.refreshToken },
        }, false);
        this.update((await response.json()) as TokenResponse);
        return;
      } catch (error) {
        if (!(error instanceof AuthenticationError)) throw error;
        // Spent or revoked (another process may have rotated it): log in again.
        this.refreshToken = null;
      }
    }
    const response = await transport.send("POST", "/api/auth/login", {
      json: { username: this.username, password: this.password },
    }, false);
    this.update((await response.json()) as TokenResponse);
  }

  forget(): void {
    this.accessToken = this.refreshToken = null;
    this.expiresAt = 0;
  }
}

// Error codes (Node's undici) that mean the request never reached the server, so even a
// POST is safe to send again.
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CONNECT_TIMEOUT"]);

function errorCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause;
  return typeof cause?.code === "string" ? cause.code : undefined;
}

export interface TransportOptions {
  /** Seconds to wait for a response's headers. Default 30. */
  timeout?: number;
  retry?: RetryPolicy;
  fetch?: typeof fetch;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
}

export class Transport {
  readonly baseUrl: string;
  readonly retry: RetryPolicy;
  private readonly timeout: number;
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Record<string, string>;

  constructor(
    baseUrl: string,
    readonly auth: Auth,
    options: TransportOptions = {},
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.retry = options.retry ?? new RetryPolicy();
    this.timeout = options.timeout ?? 30;
    const globalFetch = globalThis.fetch as typeof fetch | undefined;
    const impl = options.fetch ?? globalFetch;
    if (impl === undefined) throw new TypeError("no fetch: pass options.fetch");
    // Unbound, a browser's fetch throws "Illegal invocation".
    this.fetchImpl = options.fetch ?? impl.bind(globalThis);
    this.headers = options.headers ?? {};
  }

  url(route: string, path?: Record<string, string>, query?: Record<string, QueryValue>): string {
    const expanded = expand(route, path);
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value === null || value === undefined) continue;
      if (Array.isArray(value)) for (const item of value) search.append(name, String(item));
      else search.append(name, String(value));
    }
    const text = search.toString();
    return `${this.baseUrl}${expanded}${text ? `?${text}` : ""}`;
  }

  /** An authenticated request; answers the response once its headers are in. */
  request(method: string, route: string, options: RequestOptions = {}): Promise<Response> {
    return this.send(method, route, options, true);
  }

  /** An authenticated request answering its JSON body. */
  async json<T>(method: string, route: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.send(method, route, options, true);
    return (await response.json()) as T;
  }

  /** One request with retries; throws the typed error for an error status. */
  async send(
    method: string,
    route: string,
    options: RequestOptions,
    authenticated: boolean,
  ): Promise<Response> {
    const url = this.url(route, options.path, options.query);
    let attempt = 0;
    let renewed = false;
    for (;;) {
      attempt += 1;
      const headers: Record<string, string> = { ...this.headers, ...options.headers };
      if (authenticated) headers.Authorization = `Bearer ${await this.auth.credential(this)}`;
      const json = options.json;
      let body: ((touch: () => void) => BodyInit) | undefined = options.body;
      if (json !== undefined) {
        headers["Content-Type"] = "application/json";
        body = () => JSON.stringify(json);
      }
      const timeout = options.timeout === undefined ? this.timeout : options.timeout;
      let response: Response;
      try {
        response = await this.fetchOnce(url, method, headers, body, timeout, options.signal);
      } catch (error) {
        if (options.signal?.aborted) throw error;
        const timedOut = error instanceof APITimeoutError;
        const retryable = IDEMPOTENT.has(method) || NOT_SENT.has(errorCode(error) ?? "");
        const delay = retryable ? this.retry.delay(attempt) : null;
        if (delay === null) {
          if (timedOut) throw error;
          const reason = errorCode(error) ?? (error instanceof Error ? error.message : String(error));
          throw new APIConnectionError(`${method} ${url}: ${reason}`, { cause: error });
        }
        await sleep(delay, options.signal);
        continue;
      }
      if (response.status < 400) return response;
      const text = await response.text();
      if (RETRY_STATUSES.has(response.status)) {
        const delay = this.retry.delay(attempt, response.headers.get("Retry-After"));
        if (delay !== null) {
          await sleep(delay, options.signal);
          continue;
        }
      }
      if (response.status === 401 && authenticated && this.auth.renewable && !renewed) {
        // The token was refused although it looked fresh (clock skew, revocation): get a
        // new one once, then let a second 401 through.
        renewed = true;
        await this.auth.credential(this, true);
        attempt -= 1;
        continue;
      }
      throw errorFromResponse(response.status, headerRecord(response.headers), text);
    }
  }

  private async fetchOnce(
    url: string,
    method: string,
    headers: Record<string, string>,
    makeBody: ((touch: () => void) => BodyInit) | undefined,
    timeout: number | null,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Only the wait for the headers is timed (a stream's or download's body may take long),
    // counted from the last byte of a streamed request body.
    const touch = (): void => {
      if (timeout === null) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout * 1000);
    };
    touch();
    const body = makeBody?.(touch) ?? null;
    const init: RequestInit & { duplex?: "half" } = {
      method,
      headers,
      body,
      signal: controller.signal,
    };
    // A streamed request body needs half-duplex (fetch's rule; Node insists on it).
    if (body instanceof ReadableStream) init.duplex = "half";
    try {
      return await this.fetchImpl(url, init);
    } catch (error) {
      if (timedOut) {
        throw new APITimeoutError(`${method} ${url}: no answer in ${timeout} s`, { cause: error });
      }
      throw error;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** `/api/jobs/{job_id}` with its parameters filled in, each percent-encoded. */
export function expand(route: string, values?: Record<string, string>): string {
  return route.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = values?.[name];
    if (value === undefined) throw new TypeError(`${route}: no value for {${name}}`);
    // A model file's `path` keeps its slashes; every other value is one segment.
    return name === "path"
      ? value.split("/").map(encodeURIComponent).join("/")
      : encodeURIComponent(value);
  });
}

export function headerRecord(headers: Headers): Record<string, string> {
  const record: Record<string, string> = {};
  headers.forEach((value, name) => {
    record[name.toLowerCase()] = value;
  });
  return record;
}
