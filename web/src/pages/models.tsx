import { useState, type FormEvent } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { download, errorMessage, sdk } from "../api";
import { ErrorBox, formatBytes, formatTime, Section, Status, useLoad } from "../ui";

export function ModelsPage() {
  const [params] = useSearchParams();
  const name = params.get("name") ?? undefined;
  const list = useLoad(() => sdk((client) => client.models.list({ name, limit: 100 })), [name]);
  return (
    <>
      <h1>Models</h1>
      <ErrorBox error={list.error} />
      <table data-testid="models-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Version</th>
            <th>Tags</th>
            <th>Files</th>
            <th>Size</th>
            <th>Source job</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.items.map((m) => (
            <tr key={m.id}>
              <td>
                <Link to={`/models/${m.id}`}>{m.name}</Link>
              </td>
              <td>{m.version}</td>
              <td>{m.tags.map((t) => <span key={t} className="badge">{t}</span>)}</td>
              <td>{m.file_count}</td>
              <td>{formatBytes(m.total_size)}</td>
              <td>{m.source_job_id ? <Link to={`/jobs/${m.source_job_id}`}>{m.source_job_id}</Link> : "uploaded"}</td>
              <td>{formatTime(m.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function ModelPage() {
  const { modelId = "" } = useParams();
  const model = useLoad(() => sdk((client) => client.models.get(modelId)), [modelId]);
  const [error, setError] = useState<string | null>(null);
  const act = async (work: () => Promise<unknown>) => {
    try {
      await work();
      setError(null);
      model.reload();
    } catch (failure) {
      setError(errorMessage(failure));
    }
  };
  const tag = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const value = String(new FormData(form).get("tag") ?? "").trim();
    void act(async () => {
      await sdk((client) => client.models.tag(modelId, value));
      form.reset();
    });
  };
  const m = model.data;
  if (!m) return <ErrorBox error={model.error} />;
  const lineage = m.lineage as { job?: { id: string; name: string } | null; experiment?: { id: string; name: string } | null; dataset?: { id?: string; name?: string; version?: string } | null };
  return (
    <>
      <h1>
        {m.name} <small>{m.version}</small>
      </h1>
      <ErrorBox error={error} />
      <Section title="Tags">
        <p data-testid="model-tags">
          {m.tags.map((t) => (
            <span key={t} className="badge">
              {t}{" "}
              <button type="button" className="link" aria-label={`Remove tag ${t}`} onClick={() => act(() => sdk((client) => client.models.untag(modelId, t)))}>
                ×
              </button>
            </span>
          ))}
        </p>
        <form className="row-form" onSubmit={tag}>
          <label>
            Tag (moves it here from another version) <input name="tag" required pattern="[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}" />
          </label>
          <button type="submit">Set tag</button>
        </form>
      </Section>
      <div className="two">
        <Section title="Lineage">
          <dl className="facts">
            <dt>Job</dt>
            <dd>{lineage.job ? <Link to={`/jobs/${lineage.job.id}`}>{lineage.job.name}</Link> : "–"}</dd>
            <dt>Experiment</dt>
            <dd>{lineage.experiment ? <Link to={`/experiments/${lineage.experiment.id}`}>{lineage.experiment.name}</Link> : "–"}</dd>
            <dt>Dataset</dt>
            <dd>{lineage.dataset ? `${lineage.dataset.name ?? ""} ${lineage.dataset.version ?? ""}` : "–"}</dd>
          </dl>
        </Section>
        <Section title="Evaluations">
          <table>
            <tbody>
              {m.evaluations.map((e) => (
                <tr key={e.id}>
                  <td>{e.benchmark}</td>
                  <td>
                    <Status status={e.status} />
                  </td>
                  <td>{e.score === null ? "–" : `${e.score_name ?? "score"} ${e.score}`}</td>
                  <td>{formatTime(e.finished_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {m.evaluations.length === 0 && <p className="muted">Not evaluated yet.</p>}
        </Section>
      </div>
      <Section title="Files">
        <table>
          <tbody>
            {m.files.map((f) => (
              <tr key={f.path}>
                <td>
                  <code>{f.path}</code>
                </td>
                <td>{formatBytes(f.size)}</td>
                <td>
                  <button
                    type="button"
                    onClick={() =>
                      download(`/api/models/${modelId}/files/${f.path.split("/").map(encodeURIComponent).join("/")}`, f.path.split("/").pop() ?? "file").catch((x) =>
                        setError(errorMessage(x)),
                      )
                    }
                  >
                    Download
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}
