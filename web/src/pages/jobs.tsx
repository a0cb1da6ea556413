import { useRef, useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { errorMessage, sdk, type Job } from "../api";
import { ErrorBox, formatTime, Section, Status, useActivity, useLoad } from "../ui";

const STATUSES = ["", "pending", "running", "completed", "failed", "cancelled"] as const;
const PAGE = 50;

function parseEnvironment(text: string): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed) continue;
    const at = trimmed.indexOf("=");
    if (at <= 0) throw new Error(`environment: "${trimmed}" is not KEY=VALUE`);
    environment[trimmed.slice(0, at)] = trimmed.slice(at + 1);
  }
  return environment;
}

function SubmitForm({ onSubmitted }: { onSubmitted: (job: Job) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const choices = useLoad(
    () =>
      Promise.all([
        sdk((client) => client.experiments.list({ limit: 100 })),
        sdk((client) => client.datasets.list({ limit: 100 })),
      ]),
    [],
  );
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const text = (key: string) => String(form.get(key) ?? "").trim();
    setBusy(true);
    try {
      const job = await sdk((client) =>
        client.jobs.create({
          name: text("name"),
          command: text("command"),
          gpuCount: Number(text("gpu_count") || "1"),
          priority: Number(text("priority") || "0"),
          environment: parseEnvironment(text("environment")),
          experimentId: text("experiment_id") || undefined,
          datasetId: text("dataset_id") || undefined,
          datasetVersion: text("dataset_version") || undefined,
        }),
      );
      setError(null);
      onSubmitted(job);
    } catch (failure) {
      setError(errorMessage(failure));
    } finally {
      setBusy(false);
    }
  };
  const [experiments, datasets] = choices.data ?? [null, null];
  return (
    <form className="grid-form" onSubmit={submit} aria-label="Submit a job">
      <label>
        Name
        <input name="name" required maxLength={200} />
      </label>
      <label className="wide">
        Command
        <input name="command" required placeholder="python train.py" />
      </label>
      <label>
        GPUs
        <input name="gpu_count" type="number" min={0} defaultValue={1} />
      </label>
      <label>
        Priority
        <input name="priority" type="number" defaultValue={0} />
      </label>
      <label>
        Experiment
        <select name="experiment_id" defaultValue="">
          <option value="">none</option>
          {experiments?.items.map((e) => (
            <option key={e.id} value={e.id}>
              {e.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Dataset
        <select name="dataset_id" defaultValue="">
          <option value="">none</option>
          {datasets?.items.map((d) => (
            <option key={d.id} value={d.id}>
              {d.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Dataset version
        <input name="dataset_version" placeholder="latest" />
      </label>
      <label className="wide">
        Environment (KEY=VALUE per line)
        <textarea name="environment" rows={2} />
      </label>
      <ErrorBox error={error} />
      <button type="submit" disabled={busy}>
        Submit job
      </button>
    </form>
  );
}

export function JobsPage({ admin }: { admin: boolean }) {
  const [status, setStatus] = useState("");
  const [search, setSearch] = useState("");
  const [offset, setOffset] = useState(0);
  const [showForm, setShowForm] = useState(false);
  const [actionError, setActionError] = useState<string | null>(null);
  const jobs = useLoad(
    () =>
      sdk((client) =>
        client.jobs.list({ status: (status || undefined) as Job["status"] | undefined, limit: PAGE, offset }),
      ),
    [status, offset],
  );
  // Live: every change to one of the user's jobs refetches the page (coalesced).
  const pending = useRef<number | null>(null);
  useActivity(() => {
    if (pending.current !== null) return;
    pending.current = window.setTimeout(() => {
      pending.current = null;
      jobs.reload();
    }, 150);
  });
  const cancel = async (job: Job) => {
    try {
      await sdk((client) => client.jobs.cancel(job.id));
      setActionError(null);
      jobs.reload();
    } catch (failure) {
      setActionError(errorMessage(failure));
    }
  };
  // Admins see every user's jobs: owners by name, not id.
  const users = useLoad(() => (admin ? sdk((client) => client.users.list({ limit: 100 })) : Promise.resolve(null)), [admin]);
  const owners = new Map((users.data?.items ?? []).map((u) => [u.id, u.username]));
  const rows = (jobs.data?.items ?? []).filter((job) => !search || job.name.toLowerCase().includes(search.toLowerCase()));
  return (
    <>
      <h1>Jobs</h1>
      <Section
        title="Queue and history"
        actions={
          <button type="button" onClick={() => setShowForm(!showForm)} aria-expanded={showForm}>
            {showForm ? "Close" : "New job"}
          </button>
        }
      >
        {showForm && (
          <SubmitForm
            onSubmitted={() => {
              setShowForm(false);
              jobs.reload();
            }}
          />
        )}
        <div className="filters">
          <label>
            Status
            <select
              value={status}
              onChange={(e) => {
                setStatus(e.target.value);
                setOffset(0);
              }}
            >
              {STATUSES.map((s) => (
                <option key={s} value={s}>
                  {s || "all"}
                </option>
              ))}
            </select>
          </label>
          <label>
            Name contains
            <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
          </label>
        </div>
        <ErrorBox error={jobs.error ?? actionError} />
        <table data-testid="jobs-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Status</th>
              <th>Priority</th>
              <th>GPUs</th>
              {admin && <th>Owner</th>}
              <th>Why</th>
              <th>Submitted</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((job) => (
              <tr key={job.id} data-job-id={job.id}>
                <td>
                  <Link to={`/jobs/${job.id}`}>{job.name}</Link>
                </td>
                <td>
                  <Status status={job.status} />
                </td>
                <td>{job.priority}</td>
                <td>{job.gpus.length ? `${job.node ?? ""} [${job.gpus.join(", ")}]` : `needs ${job.gpu_count}`}</td>
                {admin && <td>{owners.get(job.owner_id) ?? job.owner_id}</td>}
                <td className="reason">{job.status === "pending" ? job.pending_reason ?? "waiting for the scheduler" : job.status_reason ?? ""}</td>
                <td>{formatTime(job.created_at)}</td>
                <td>
                  {(job.status === "pending" || job.status === "running") && (
                    <button type="button" className="danger" onClick={() => cancel(job)} aria-label={`Cancel ${job.name}`}>
                      Cancel
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {jobs.data && (
          <div className="pager">
            <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
              Newer
            </button>
            <span>
              {jobs.data.total === 0 ? "no jobs" : `${offset + 1}–${Math.min(offset + PAGE, jobs.data.total)} of ${jobs.data.total}`}
            </span>
            <button type="button" disabled={offset + PAGE >= jobs.data.total} onClick={() => setOffset(offset + PAGE)}>
              Older
            </button>
          </div>
        )}
      </Section>
    </>
  );
}
