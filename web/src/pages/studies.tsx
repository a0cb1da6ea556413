import { useEffect, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { errorMessage, sdk } from "../api";
import { ErrorBox, formatTime, Section, Status, useActivity, useLoad } from "../ui";

const FINAL = new Set(["completed", "failed", "cancelled"]);
// Trial values and the best value are written by the study's controller after a trial's job
// ends, a moment after the job's own event: a running study is also fetched again this often.
const REFRESH_MS = 2000;

function formatValue(value: number | null): string {
  return value === null ? "–" : String(Number(value.toPrecision(6)));
}

function formatParams(params: Record<string, unknown> | null): string {
  return Object.entries(params ?? {})
    .map(([name, value]) => `${name}=${JSON.stringify(value)}`)
    .join(" ");
}

/** Reloads while `active`: on each of the user's job changes (trials are jobs), and every REFRESH_MS. */
function useRefresh(reload: () => void, active: boolean): void {
  useActivity(() => {
    if (active) reload();
  });
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(reload, REFRESH_MS);
    return () => clearInterval(timer);
  }, [reload, active]);
}

export function StudiesPage() {
  const list = useLoad(() => sdk((client) => client.hpo.list({ limit: 100 })), []);
  useRefresh(list.reload, (list.data?.items ?? []).some((s) => !FINAL.has(s.status)));
  return (
    <>
      <h1>HPO studies</h1>
      <p className="muted">Create studies with the API, the SDKs or `sparktrainer hpo create`; each trial is a job.</p>
      <ErrorBox error={list.error} />
      <table data-testid="studies-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Trials</th>
            <th>Objective</th>
            <th>Best value</th>
            <th>Best params</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.items.map((s) => (
            <tr key={s.id} data-study-id={s.id}>
              <td>
                <Link to={`/hpo/${s.id}`}>{s.name}</Link>
              </td>
              <td>
                <Status status={s.status} />
              </td>
              <td>
                {s.n_trials} / {s.n_trials_requested}
              </td>
              <td>
                {s.objective} {s.metric}
              </td>
              <td>{formatValue(s.best_value)}</td>
              <td>{formatParams(s.best_params)}</td>
              <td>{formatTime(s.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function StudyPage() {
  const { studyId = "" } = useParams();
  const study = useLoad(() => sdk((client) => client.hpo.get(studyId)), [studyId]);
  const detail = study.data;
  const [cancelError, setCancelError] = useState<string | null>(null);
  // A cancelled study's running trials are recorded FAIL once their jobs have stopped.
  const active = detail !== null && (!FINAL.has(detail.status) || detail.trials.some((t) => t.state === "RUNNING"));
  useRefresh(study.reload, active);
  if (study.error && !detail) return <ErrorBox error={study.error} />;
  if (!detail) return <p className="loading">Loading…</p>;
  const cancel = async () => {
    try {
      study.setData(await sdk((client) => client.hpo.cancel(studyId)));
      setCancelError(null);
    } catch (failure) {
      setCancelError(errorMessage(failure));
    }
  };
  const trials = [...detail.trials].sort((a, b) => a.number - b.number);
  return (
    <>
      <h1>
        {detail.name} <Status status={detail.status} />
      </h1>
      <ErrorBox error={cancelError ?? study.error} />
      <div className="summary">
        <span data-testid="study-trials">
          {detail.n_trials} of {detail.n_trials_requested} trials
        </span>
        <span>
          {detail.objective} {detail.metric}
        </span>
        <span data-testid="study-best">best {formatValue(detail.best_value)}</span>
        {detail.best_params && <span>at {formatParams(detail.best_params)}</span>}
        <span>
          sampler {detail.sampler}, pruner {detail.pruner}, parallelism {detail.parallelism}
        </span>
        {detail.experiment_id && <Link to={`/experiments/${detail.experiment_id}`}>experiment</Link>}
        {detail.status_reason && <span className="reason">{detail.status_reason}</span>}
        {!FINAL.has(detail.status) && (
          <button type="button" className="danger" onClick={cancel}>
            Cancel
          </button>
        )}
      </div>
      {detail.parameter_importance && (
        <p className="muted" data-testid="importance">
          Importance:{" "}
          {Object.entries(detail.parameter_importance)
            .map(([name, value]) => `${name} ${value.toFixed(2)}`)
            .join(", ")}
        </p>
      )}
      <Section title="Trials">
        <table data-testid="trials-table">
          <thead>
            <tr>
              <th>Number</th>
              <th>State</th>
              <th>Params</th>
              <th>Value</th>
              <th>Job</th>
              <th>Finished</th>
            </tr>
          </thead>
          <tbody>
            {trials.map((t) => (
              <tr key={t.number} data-trial={t.number}>
                <td>{t.number}</td>
                <td title={t.reason ?? undefined}>
                  {t.state}
                  {t.reason && <span className="reason"> ({t.reason})</span>}
                </td>
                <td>{formatParams(t.params)}</td>
                <td>{formatValue(t.value)}</td>
                <td>
                  <Link to={`/jobs/${t.job_id}`}>{t.job_id}</Link> <Status status={t.job_status} />
                </td>
                <td>{formatTime(t.finished_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}
