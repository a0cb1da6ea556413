import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { errorMessage, raw, sdk, streamUrl, withQuery, type JobDetail } from "../api";
import { LiveChart, LiveSeries } from "../chart";
import { ErrorBox, formatTime, Section, Status, useActivity, useLoad } from "../ui";

const FINAL = new Set(["completed", "failed", "cancelled"]);
// Points per chart on first load and per zoom: what a chart's width can show, with each
// bucket's minimum and maximum kept by the server.
const HISTORY_POINTS = 2000;
const LOG_LIMIT = 200_000;

function useJobCharts(jobId: string, live: boolean | null) {
  const [series, setSeries] = useState<LiveSeries[]>([]);
  const [error, setError] = useState<string | null>(null);
  // The stream resumes after this event id once the history is drawn (null: not yet).
  const [lastSeq, setLastSeq] = useState<number | null>(null);
  const byName = useRef(new Map<string, LiveSeries>());

  const ensure = useCallback((name: string): LiveSeries => {
    let found = byName.current.get(name);
    if (!found) {
      found = new LiveSeries(name);
      byName.current.set(name, found);
      setSeries([...byName.current.values()]);
    }
    return found;
  }, []);

  // The history loads at once, alongside the job itself (not after it).
  useEffect(() => {
    let stopped = false;
    byName.current = new Map();
    setSeries([]);
    setLastSeq(null);
    sdk((client) => client.jobs.metrics(jobId, { maxPoints: HISTORY_POINTS })).then(
      (history) => {
        if (stopped) return;
        for (const metric of history.metrics) ensure(metric.name).replace(metric.steps, metric.values);
        setLastSeq(history.last_seq);
      },
      (failure) => setError(errorMessage(failure)),
    );
    return () => {
      stopped = true;
    };
  }, [jobId, ensure]);

  useEffect(() => {
    if (!live || lastSeq === null) return;
    let source: EventSource | null = null;
    let stopped = false;
    streamUrl(`/api/jobs/${jobId}/stream`, { after: lastSeq }).then((url) => {
      if (stopped) return;
      source = new EventSource(url);
      source.onmessage = (event: MessageEvent<string>) => {
        const point = JSON.parse(event.data) as Record<string, number>;
        for (const [name, value] of Object.entries(point)) {
          if (name !== "step") ensure(name).append(point.step, value);
        }
      };
      source.addEventListener("end", () => source?.close());
    }, (failure) => setError(errorMessage(failure)));
    return () => {
      stopped = true;
      source?.close();
    };
  }, [jobId, live, lastSeq, ensure]);

  const zoom = useCallback(
    async (item: LiveSeries, min: number, max: number) => {
      try {
        const detail = await sdk((client) =>
          client.jobs.metrics(jobId, { names: [item.name], stepMin: min, stepMax: max, maxPoints: HISTORY_POINTS }),
        );
        const metric = detail.metrics[0];
        item.zoomed = true;
        item.plot?.setData([metric?.steps ?? [], metric?.values ?? []], true);
      } catch (failure) {
        setError(errorMessage(failure));
      }
    },
    [jobId],
  );
  const reset = useCallback((item: LiveSeries) => {
    item.zoomed = false;
    item.plot?.setData([item.steps, item.values], true);
  }, []);
  return { series, error, zoom, reset };
}

function Logs({ jobId, running }: { jobId: string; running: boolean }) {
  const [stream, setStream] = useState<"stdout" | "stderr">("stdout");
  const [follow, setFollow] = useState(running);
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const box = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const abort = new AbortController();
    setText("");
    (async () => {
      const response = await raw(withQuery(`/api/jobs/${jobId}/logs`, { stream, follow: follow || undefined, tail: follow ? undefined : 1000 }), {
        signal: abort.signal,
      });
      if (!response.body) return;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        setText((old) => (old + value).slice(-LOG_LIMIT));
      }
    })().catch((failure) => {
      if (!abort.signal.aborted) setError(errorMessage(failure));
    });
    return () => abort.abort();
  }, [jobId, stream, follow]);
  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [text, follow]);
  return (
    <Section
      title="Logs"
      actions={
        <div className="filters">
          <label>
            Stream
            <select value={stream} onChange={(e) => setStream(e.target.value as "stdout" | "stderr")}>
              <option value="stdout">stdout</option>
              <option value="stderr">stderr</option>
            </select>
          </label>
          <label className="inline">
            <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow
          </label>
        </div>
      }
    >
      <ErrorBox error={error} />
      <pre className="logs" ref={box} data-testid="logs" tabIndex={0}>
        {text || "(empty)"}
      </pre>
    </Section>
  );
}

export function JobPage() {
  const { jobId = "" } = useParams();
  const job = useLoad(() => sdk((client) => client.jobs.get(jobId)), [jobId]);
  useActivity((event) => {
    if (event.job_id === jobId) job.reload();
  });
  const detail: JobDetail | null = job.data;
  // Whether to stream is decided once per load of a job that has not ended yet.
  const live = detail !== null && !FINAL.has(detail.status);
  const [liveOnce, setLiveOnce] = useState<boolean | null>(null);
  useEffect(() => {
    if (detail && liveOnce === null) setLiveOnce(live);
  }, [detail, live, liveOnce]);
  useEffect(() => setLiveOnce(null), [jobId]);
  const charts = useJobCharts(jobId, liveOnce);
  const [cancelError, setCancelError] = useState<string | null>(null);
  if (job.error && !detail) return <ErrorBox error={job.error} />;
  if (!detail || liveOnce === null) return <p className="loading">Loading…</p>;
  const cancel = async () => {
    try {
      await sdk((client) => client.jobs.cancel(jobId));
      job.reload();
    } catch (failure) {
      setCancelError(errorMessage(failure));
    }
  };
  return (
    <>
      <h1>
        {detail.name} <Status status={detail.status} />
      </h1>
      <ErrorBox error={cancelError} />
      <div className="summary">
        <span>priority {detail.priority}</span>
        <span>{detail.gpus.length ? `GPUs ${detail.node ?? ""} [${detail.gpus.join(", ")}]` : `needs ${detail.gpu_count} GPUs`}</span>
        {detail.status === "pending" && <span className="reason" data-testid="pending-reason">{detail.pending_reason ?? "waiting for the scheduler"}</span>}
        {detail.status_reason && <span className="reason">{detail.status_reason}</span>}
        {!FINAL.has(detail.status) && (
          <button type="button" className="danger" onClick={cancel}>
            Cancel
          </button>
        )}
      </div>
      <code className="command">{detail.command}</code>
      <Section title="Metrics">
        <ErrorBox error={charts.error} />
        {charts.series.length === 0 && <p className="muted">No metrics logged yet.</p>}
        <div className="charts">
          {charts.series.map((item) => (
            <LiveChart
              key={item.name}
              series={item}
              title={item.name}
              onZoom={(min, max) => void charts.zoom(item, min, max)}
              onReset={() => charts.reset(item)}
            />
          ))}
        </div>
      </Section>
      <Logs jobId={jobId} running={!FINAL.has(detail.status)} />
      <div className="two">
        <Section title="Status timeline">
          <ol className="timeline" data-testid="timeline">
            {detail.events.map((event, i) => (
              <li key={i}>
                <time>{formatTime(event.at)}</time> {event.from_status ? `${event.from_status} → ` : ""}
                <Status status={event.to_status} />
                {event.reason && <span className="reason"> {event.reason}</span>}
              </li>
            ))}
          </ol>
        </Section>
        <Section title="Lineage">
          <dl className="facts">
            <dt>Experiment</dt>
            <dd>{detail.experiment_id ? <Link to={`/experiments/${detail.experiment_id}`}>{detail.experiment_id}</Link> : "–"}</dd>
            <dt>Dataset version</dt>
            <dd>{detail.dataset_version_id ?? "–"}</dd>
            <dt>Model</dt>
            <dd>{detail.model_name ? <Link to={`/models?name=${encodeURIComponent(detail.model_name)}`}>{detail.model_name}</Link> : "–"}</dd>
            <dt>Owner</dt>
            <dd>{detail.owner_id}</dd>
          </dl>
        </Section>
      </div>
    </>
  );
}
