import { useState, type FormEvent } from "react";
import { Link, useParams } from "react-router-dom";
import { download, errorMessage, sdk, upload } from "../api";
import { ErrorBox, formatBytes, formatTime, Section, useLoad } from "../ui";

function Upload({ onDone, name }: { onDone: () => void; name?: string }) {
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    setProgress(0);
    try {
      await upload("/api/datasets", data, (loaded, total) => setProgress(total ? loaded / total : 0));
      form.reset();
      setError(null);
      onDone();
    } catch (failure) {
      setError(errorMessage(failure));
    } finally {
      setProgress(null);
    }
  };
  return (
    <form className="row-form" onSubmit={submit} aria-label="Upload a dataset">
      <label>
        Name <input name="name" required defaultValue={name} readOnly={name !== undefined} pattern="[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}" />
      </label>
      <label>
        File <input name="file" type="file" required />
      </label>
      <button type="submit" disabled={progress !== null}>
        Upload
      </button>
      {progress !== null && <progress value={progress} max={1} aria-label="Upload progress" data-testid="upload-progress" />}
      <ErrorBox error={error} />
    </form>
  );
}

export function DatasetsPage() {
  const list = useLoad(() => sdk((client) => client.datasets.list({ limit: 100 })), []);
  return (
    <>
      <h1>Datasets</h1>
      <Section title="Upload">
        <Upload onDone={list.reload} />
      </Section>
      <ErrorBox error={list.error} />
      <table data-testid="datasets-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Versions</th>
            <th>Latest</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.items.map((d) => (
            <tr key={d.id}>
              <td>
                <Link to={`/datasets/${d.id}`}>{d.name}</Link>
              </td>
              <td>{d.version_count}</td>
              <td>{d.latest_version?.version ?? "–"}</td>
              <td>{formatTime(d.updated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function DatasetPage() {
  const { datasetId = "" } = useParams();
  const detail = useLoad(() => sdk((client) => client.datasets.get(datasetId)), [datasetId]);
  const versions = useLoad(() => sdk((client) => client.datasets.versions(datasetId)), [datasetId]);
  const [error, setError] = useState<string | null>(null);
  const reload = () => {
    detail.reload();
    versions.reload();
  };
  const preview = (detail.data?.latest_version as { preview?: unknown[] | null } | undefined)?.preview;
  return (
    <>
      <h1>{detail.data?.name ?? "Dataset"}</h1>
      <ErrorBox error={detail.error ?? versions.error ?? error} />
      <Section title="Versions">
        <table data-testid="versions-table">
          <thead>
            <tr>
              <th>Version</th>
              <th>Hash (md5)</th>
              <th>Size</th>
              <th>Records</th>
              <th>Format</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {versions.data?.versions.map((v) => (
              <tr key={v.id}>
                <td>{v.version}</td>
                <td>
                  <code>{v.hash}</code>
                </td>
                <td>{formatBytes(v.size)}</td>
                <td>{v.record_count ?? "–"}</td>
                <td>{v.format}</td>
                <td>{formatTime(v.created_at)}</td>
                <td>
                  <button
                    type="button"
                    onClick={() =>
                      download(`/api/datasets/${datasetId}/versions/${v.version}/download`, v.filename ?? `${detail.data?.name}-${v.version}`).catch((f) =>
                        setError(errorMessage(f)),
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
      <Section title="New version">{detail.data && <Upload name={detail.data.name} onDone={reload} />}</Section>
      <Section title="Preview (latest version)">
        {preview ? <pre className="logs">{preview.map((row) => JSON.stringify(row)).join("\n")}</pre> : <p className="muted">No preview for this format.</p>}
      </Section>
    </>
  );
}
