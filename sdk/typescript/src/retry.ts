import { parseRetryAfter } from "./errors.js";

/**
 * Bounded retries with exponential backoff and jitter.
 *
 * Retries 429 and 503 answers and connection failures; a failure after a non-idempotent
 * request was sent (a POST that may have run) is never retried. `Retry-After` is honoured:
 * the wait is at least what the server asked, unless that exceeds `maxRetryAfter`, in which
 * case the error is raised at once.
 */
export interface RetryOptions {
  /** Retries after the first try; 0 turns retries off. Default 3. */
  maxRetries?: number;
  /** Seconds before the first retry (doubled each time, halved-to-full jitter). Default 0.5. */
  backoffBase?: number;
  /** Longest backoff in seconds. Default 8. */
  backoffMax?: number;
  /** A longer `Retry-After` than this (seconds) is not waited for. Default 60. */
  maxRetryAfter?: number;
}

export class RetryPolicy {
  readonly maxRetries: number;
  readonly backoffBase: number;
  readonly backoffMax: number;
  readonly maxRetryAfter: number;

  constructor(options: RetryOptions = {}) {
    this.maxRetries = options.maxRetries ?? 3;
    this.backoffBase = options.backoffBase ?? 0.5;
    this.backoffMax = options.backoffMax ?? 8;
    this.maxRetryAfter = options.maxRetryAfter ?? 60;
  }

  /** Seconds before retry number `attempt` (1-based), or null to give up. */
  delay(attempt: number, retryAfter?: string | null): number | null {
    if (attempt > this.maxRetries) return null;
    const asked = parseRetryAfter(retryAfter);
    if (asked !== null) {
      if (asked > this.maxRetryAfter) return null;
      // A little on top, so clients told the same instant do not all come back together.
      return asked + Math.random() * Math.min(1, this.backoffBase);
    }
    const backoff = Math.min(this.backoffMax, this.backoffBase * 2 ** (attempt - 1));
    return backoff / 2 + Math.random() * (backoff / 2);
  }
}

export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 503]);
export const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

export function sleep(seconds: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, seconds * 1000);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
