/**
 * The SDK's errors, one hierarchy built from the API's error JSON
 * (`{"error": "Not Found", "message": "...", "status": 404}`), as in the Python SDK:
 *
 *     SparkTrainerError
 *     ├── APIConnectionError            the server could not be reached (after retries)
 *     │   └── APITimeoutError
 *     ├── StreamError                   a stream broke and could not be resumed
 *     └── APIStatusError                the server answered an error status
 *         ├── ValidationError           400, 422: bad input; `message` names the field
 *         ├── AuthenticationError       401: missing, invalid or expired credentials
 *         ├── PermissionDeniedError     403
 *         ├── NotFoundError             404 (someone else's resource answers 404 too)
 *         ├── ConflictError             409: e.g. cancelling a job that has ended
 *         ├── PayloadTooLargeError      413
 *         ├── RangeNotSatisfiableError  416
 *         ├── RateLimitError            429, with `retryAfter` in seconds
 *         └── ServerError               5xx
 *             └── ServiceUnavailableError  503
 */

export class SparkTrainerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    // `name` follows the subclass, so logs and `String(error)` say which error it is.
    this.name = new.target.name;
  }
}

export class APIConnectionError extends SparkTrainerError {}

export class APITimeoutError extends APIConnectionError {}

export class StreamError extends SparkTrainerError {}

export class APIStatusError extends SparkTrainerError {
  readonly status: number;
  /** The short reason phrase of the error JSON, e.g. "Not Found". */
  readonly error: string;
  /** Response headers, names in lower case. */
  readonly headers: Record<string, string>;

  constructor(status: number, error: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.error = error;
    this.headers = headers;
  }

  override toString(): string {
    return `${this.name}: ${this.status} ${this.error}: ${this.message}`;
  }
}

export class ValidationError extends APIStatusError {}
export class AuthenticationError extends APIStatusError {}
export class PermissionDeniedError extends APIStatusError {}
export class NotFoundError extends APIStatusError {}
export class ConflictError extends APIStatusError {}
export class PayloadTooLargeError extends APIStatusError {}
export class RangeNotSatisfiableError extends APIStatusError {}

export class RateLimitError extends APIStatusError {
  /** Seconds the server asked to wait (`Retry-After`), or null if it did not say. */
  get retryAfter(): number | null {
    return parseRetryAfter(this.headers["retry-after"]);
  }
}

export class ServerError extends APIStatusError {}
export class ServiceUnavailableError extends ServerError {}

type StatusErrorClass = new (
  status: number,
  error: string,
  message: string,
  headers?: Record<string, string>,
) => APIStatusError;

const BY_STATUS: Record<number, StatusErrorClass> = {
  400: ValidationError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  416: RangeNotSatisfiableError,
  422: ValidationError,
  429: RateLimitError,
  503: ServiceUnavailableError,
};

/** `Retry-After` as seconds: either delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null | undefined): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.max(0, Number(trimmed));
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

/** The error for an error response, read from the spec's error JSON when present. */
export function errorFromResponse(
  status: number,
  headers: Record<string, string>,
  body: string,
): APIStatusError {
  let error = `HTTP ${status}`;
  let message = body.slice(0, 500) || error;
  try {
    const payload: unknown = JSON.parse(body);
    if (payload !== null && typeof payload === "object" && !Array.isArray(payload)) {
      const fields = payload as Record<string, unknown>;
      if (fields.error) error = String(fields.error);
      if (fields.message) message = String(fields.message);
    }
  } catch {
    // Not JSON (a proxy's HTML page, say): keep the text.
  }
  const cls = BY_STATUS[status] ?? (status >= 500 ? ServerError : APIStatusError);
  return new cls(status, error, message, headers);
}
