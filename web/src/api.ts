/**
 * The dashboard's one way to the API: the session (tokens kept in localStorage and
 * refreshed quietly before they expire), the TypeScript SDK for what it covers, and a thin
 * `request` for the routes it does not cover yet. Every failure becomes an `ApiError`
 * carrying the spec's `message`; a 429 waits out `Retry-After` and tries again.
 */

import { APIStatusError, SparkTrainerClient } from "@sparktrainer/sdk";

export type { ApiKeyCreated, Gpu, Job, JobDetail, MetricSeries, User } from "@sparktrainer/sdk";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Tokens {
  access: string;
  refresh: string;
  // Epoch milliseconds.
  expiresAt: number;
}

const STORAGE_KEY = "sparktrainer.session";
const MAX_RATE_LIMIT_WAITS = 3;

type Listener = (signedIn: boolean) => void;

class Session {
  private tokens: Tokens | null = null;
  private renewing: Promise<void> | null = null;
  private listeners = new Set<Listener>();
  private client: SparkTrainerClient | null = null;

  constructor() {
    try {
      const saved = localStorage.getItem(STORAGE_KEY);
      this.tokens = saved ? (JSON.parse(saved) as Tokens) : null;
    } catch {
      this.tokens = null;
    }
  }

  get signedIn(): boolean {
    return this.tokens !== null;
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private save(tokens: Tokens | null): void {
    this.tokens = tokens;
    this.client = null;
    if (tokens) localStorage.setItem(STORAGE_KEY, JSON.stringify(tokens));
    else localStorage.removeItem(STORAGE_KEY);
    for (const listener of this.listeners) listener(tokens !== null);
  }

  private store(body: { access_token: string; refresh_token: string; expires_in: number }): void {
    this.save({
      access: body.access_token,
      refresh: body.refresh_token,
      expiresAt: Date.now() + body.expires_in * 1000,
    });
  }

  async login(username: string, password: string): Promise<void> {
    const response = await fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (!response.ok) throw await errorOf(response);
    this.store(await response.json());
  }

  async logout(): Promise<void> {
    const tokens = this.tokens;
    this.save(null);
    if (tokens) {
      // Revokes the refresh token's family; the page is signed out either way.
      await fetch("/api/auth/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${tokens.access}` },
        body: JSON.stringify({ refresh_token: tokens.refresh }),
      }).catch(() => undefined);
    }
  }

  /** A valid access token, refreshed first when it would expire within a minute. */
  async token(force = false): Promise<string> {
    if (!this.tokens) throw new ApiError(401, "Signed out");
    const margin = 60_000;
    if (force || Date.now() > this.tokens.expiresAt - margin) {
      this.renewing ??= this.renew().finally(() => {
        this.renewing = null;
      });
      await this.renewing;
    }
    if (!this.tokens) throw new ApiError(401, "Signed out");
    return this.tokens.access;
  }

  private async renew(): Promise<void> {
    const tokens = this.tokens;
    if (!tokens) return;
    const response = await fetch("/api/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: tokens.refresh }),
    });
    if (response.ok) {
      this.store(await response.json());
    } else if (response.status === 401) {
      this.save(null); // spent or revoked: sign in again
    } else {
      throw await errorOf(response);
    }
  }

  /** The SDK's client with the current token (its own retries wait out 429s). */
  async sdk(): Promise<SparkTrainerClient> {
    const token = await this.token();
    if (!this.client || this.clientToken !== token) {
      this.client = new SparkTrainerClient({
        baseUrl: window.location.origin,
        apiKey: token,
        WebSocket: null,
        retry: { maxRetries: MAX_RATE_LIMIT_WAITS },
      });
      this.clientToken = token;
    }
    return this.client;
  }
  private clientToken: string | null = null;
}

export const session = new Session();

async function errorOf(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.json()) as { message?: string };
    if (body.message) message = body.message;
  } catch {
    // Not the spec's JSON (a proxy's page): the status line says what happened.
  }
  return new ApiError(response.status, message);
}

function asApiError(error: unknown): unknown {
  if (error instanceof APIStatusError) return new ApiError(error.status, error.message);
  return error;
}

/** Runs an SDK call; a 401 refreshes the token once and tries again. */
export async function sdk<T>(call: (client: SparkTrainerClient) => Promise<T>): Promise<T> {
  try {
    return await call(await session.sdk());
  } catch (error) {
    if (error instanceof APIStatusError && error.status === 401 && session.signedIn) {
      await session.token(true);
      try {
        return await call(await session.sdk());
      } catch (again) {
        throw asApiError(again);
      }
    }
    throw asApiError(error);
  }
}

export type Query = Record<string, string | number | boolean | null | undefined | readonly (string | number)[]>;

export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) for (const item of value) params.append(key, String(item));
    else params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An authenticated fetch: a 401 refreshes once, a 429 waits out Retry-After. */
export async function raw(path: string, init: RequestInit = {}): Promise<Response> {
  let refreshed = false;
  for (let attempt = 0; ; attempt++) {
    const token = await session.token();
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${token}`);
    const response = await fetch(path, { ...init, headers });
    if (response.status === 401 && !refreshed && session.signedIn) {
      refreshed = true;
      await session.token(true);
      continue;
    }
    if (response.status === 429 && attempt < MAX_RATE_LIMIT_WAITS) {
      const seconds = Number(response.headers.get("Retry-After") ?? "1");
      await sleep(Math.max(1, Number.isFinite(seconds) ? seconds : 1) * 1000);
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

export async function request<T>(
  method: string,
  path: string,
  options: { query?: Query; json?: unknown } = {},
): Promise<T> {
  const init: RequestInit = { method };
  if (options.json !== undefined) {
    init.body = JSON.stringify(options.json);
    init.headers = { "Content-Type": "application/json" };
  }
  const response = await raw(withQuery(path, options.query), init);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

/** A multipart upload with progress (fetch cannot report an upload's progress). */
export async function upload<T>(
  path: string,
  form: FormData,
  onProgress: (loaded: number, total: number) => void,
): Promise<T> {
  const token = await session.token();
  return new Promise<T>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total);
    xhr.onerror = () => reject(new ApiError(0, "The upload could not reach the server"));
    xhr.onload = () => {
      let body: { message?: string } = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = {};
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body as T);
      else reject(new ApiError(xhr.status, body.message ?? `${xhr.status} ${xhr.statusText}`));
    };
    xhr.send(form);
  });
}

/** Saves an authenticated download as a file. */
export async function download(path: string, filename: string): Promise<void> {
  const response = await raw(path);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A Server-Sent Events URL: `EventSource` cannot send headers, so the token rides along. */
export async function streamUrl(path: string, query: Query = {}): Promise<string> {
  return withQuery(path, { ...query, access_token: await session.token() });
}
