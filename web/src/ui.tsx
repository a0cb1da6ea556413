import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import { errorMessage, session, streamUrl } from "./api";

/** Loads data for a page; `reload` fetches again (quietly: the old data stays meanwhile). */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const generation = useRef(0);
  const reload = useCallback(() => {
    const mine = ++generation.current;
    load().then(
      (value) => {
        if (mine !== generation.current) return;
        setData(value);
        setError(null);
      },
      (failure) => {
        if (mine === generation.current) setError(errorMessage(failure));
      },
    );
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  return { data, error, reload, setData };
}

export interface ActivityEvent {
  type: "job.submitted" | "job.status" | "job.pending_reason" | "resync";
  job_id: string;
  owner_id: string;
  name: string;
  status: string;
  previous_status: string | null;
  reason: string | null;
  pending_reason: string | null;
  at: string;
}

type ActivityListener = (event: ActivityEvent) => void;
const activityListeners = new Set<ActivityListener>();
let activitySource: EventSource | null = null;

async function openActivity(): Promise<void> {
  if (activitySource || !session.signedIn) return;
  const source = new EventSource(await streamUrl("/api/events/stream"));
  activitySource = source;
  const deliver = (event: MessageEvent<string>) => {
    const parsed = JSON.parse(event.data) as ActivityEvent;
    for (const listener of activityListeners) listener(parsed);
  };
  source.onmessage = deliver;
  source.addEventListener("resync", deliver as EventListener);
  source.onerror = () => {
    // The browser would retry with the same (perhaps expired) token: reopen with a fresh one.
    if (source.readyState === EventSource.CLOSED || activitySource === source) {
      source.close();
      activitySource = null;
      if (activityListeners.size > 0) setTimeout(() => void openActivity(), 2000);
    }
  };
}

/** Calls `listener` for each of the user's job changes, live (one stream for the page). */
export function useActivity(listener: ActivityListener): void {
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => {
    const relay: ActivityListener = (event) => latest.current(event);
    activityListeners.add(relay);
    void openActivity();
    return () => {
      activityListeners.delete(relay);
      if (activityListeners.size === 0 && activitySource) {
        activitySource.close();
        activitySource = null;
      }
    };
  }, []);
}

export function closeActivity(): void {
  activitySource?.close();
  activitySource = null;
}

export function ErrorBox({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <p role="alert" className="error">
      {error}
    </p>
  );
}

export function Status({ status }: { status: string }) {
  return <span className={`status status-${status}`}>{status}</span>;
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { hour12: false });
}

export function Section({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  return (
    <section className="card">
      <header className="card-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}
