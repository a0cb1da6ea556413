import { useMemo, useState, type FormEvent } from "react";
import { Link, useParams } from "react-router-dom";
import { errorMessage, request, sdk, type MetricSeries } from "../api";
import { Chart, type Line } from "../chart";
import { ErrorBox, formatTime, Section, Status, useActivity, useLoad } from "../ui";

export function ExperimentsPage() {
  const list = useLoad(() => sdk((client) => client.experiments.list({ limit: 100 })), []);
  const [error, setError] = useState<string | null>(null);
  const create = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = event.currentTarget;
    const name = String(new FormData(form).get("name") ?? "").trim();
    try {
      await sdk((client) => client.experiments.create({ name }));
      form.reset();
      setError(null);
      list.reload();
    } catch (failure) {
      setError(errorMessage(failure));
    }
  };
  return (
    <>
      <h1>Experiments</h1>
      <Section title="New experiment">
        <form className="row-form" onSubmit={create}>
          <label>
            Name <input name="name" required />
          </label>
          <button type="submit">Create</button>
        </form>
        <ErrorBox error={error ?? list.error} />
      </Section>
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Description</th>
            <th>Tags</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.items.map((e) => (
            <tr key={e.id}>
              <td>
                <Link to={`/experiments/${e.id}`}>{e.name}</Link>
              </td>
              <td>{e.description ?? ""}</td>
              <td>{Object.entries(e.tags ?? {}).map(([k, v]) => `${k}:${v}`).join(" ")}</td>
              <td>{formatTime(e.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

interface RunMetrics {
  experiment_id: string;
  runs: { job_id: string; name: string; status: string; metrics: MetricSeries[] }[];
}

const OVERLAY_POINTS = 1000;

export function ExperimentPage() {
  const { experimentId = "" } = useParams();
  const [sort, setSort] = useState("created_at");
  const [order, setOrder] = useState<"asc" | "desc" | undefined>(undefined);
  const [view, setView] = useState<"best" | "latest">("best");
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [metric, setMetric] = useState<string>("");
  const experiment = useLoad(() => sdk((client) => client.experiments.get(experimentId)), [experimentId]);
  const runs = useLoad(
    () => sdk((client) => client.experiments.runs(experimentId, { sort, order, limit: 100 })),
    [experimentId, sort, order],
  );
  useActivity(() => runs.reload());
  const names = useMemo(() => {
    const all = new Set<string>();
    for (const run of runs.data?.items ?? []) for (const name of Object.keys(run.metrics)) all.add(name);
    return [...all].sort();
  }, [runs.data]);
  const shownMetric = metric || names[0] || "";
  const ids = [...chosen].sort();
  const curves = useLoad(
    () =>
      shownMetric && ids.length
        ? request<RunMetrics>("GET", `/api/experiments/${experimentId}/metrics`, {
            query: { name: shownMetric, job_ids: ids, max_points: OVERLAY_POINTS },
          })
        : Promise.resolve(null),
    [experimentId, shownMetric, ids.join(",")],
  );
  const lines: Line[] = (curves.data?.runs ?? []).map((run) => ({
    label: run.name,
    steps: run.metrics[0]?.steps ?? [],
    values: run.metrics[0]?.values ?? [],
  }));
  const sortBy = (key: string) => {
    if (sort === key) setOrder(order === "asc" ? "desc" : "asc");
    else {
      setSort(key);
      setOrder(undefined);
    }
  };
  const toggle = (id: string) => {
    const next = new Set(chosen);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setChosen(next);
  };
  return (
    <>
      <h1>{experiment.data?.name ?? "Experiment"}</h1>
      <ErrorBox error={experiment.error ?? runs.error ?? curves.error} />
      {experiment.data && (
        <p className="muted">
          {experiment.data.run_count} runs · {Object.entries(experiment.data.runs_by_status).map(([s, n]) => `${n} ${s}`).join(", ")}
        </p>
      )}
      <Section
        title="Runs"
        actions={
          <label>
            Show
            <select value={view} onChange={(e) => setView(e.target.value as "best" | "latest")}>
              <option value="best">best</option>
              <option value="latest">latest</option>
            </select>
          </label>
        }
      >
        <table data-testid="runs-table">
          <thead>
            <tr>
              <th>Compare</th>
              <th>
                <button type="button" className="link" onClick={() => sortBy("name")}>
                  Run
                </button>
              </th>
              <th>
                <button type="button" className="link" onClick={() => sortBy("status")}>
                  Status
                </button>
              </th>
              {names.map((name) => (
                <th key={name} aria-sort={sort === `metric:${name}` ? (order === "asc" ? "ascending" : "descending") : undefined}>
                  <button type="button" className="link" onClick={() => sortBy(`metric:${name}`)}>
                    {name}
                  </button>
                </th>
              ))}
              <th>Params</th>
            </tr>
          </thead>
          <tbody>
            {runs.data?.items.map((run) => (
              <tr key={run.id}>
                <td>
                  <input type="checkbox" checked={chosen.has(run.id)} onChange={() => toggle(run.id)} aria-label={`Compare ${run.name}`} />
                </td>
                <td>
                  <Link to={`/jobs/${run.id}`}>{run.name}</Link>
                </td>
                <td>
                  <Status status={run.status} />
                </td>
                {names.map((name) => {
                  const summary = run.metrics[name];
                  const value = summary ? (view === "best" ? summary.best : summary.latest) : null;
                  return <td key={name}>{value === null ? "–" : Number(value.toPrecision(5))}</td>;
                })}
                <td>{Object.entries(run.params).map(([k, v]) => `${k}=${v}`).join(" ")}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
      <Section
        title="Compare"
        actions={
          <label>
            Metric
            <select value={shownMetric} onChange={(e) => setMetric(e.target.value)}>
              {names.map((name) => (
                <option key={name}>{name}</option>
              ))}
            </select>
          </label>
        }
      >
        {lines.length === 0 ? (
          <p className="muted">Tick runs above to overlay their curves.</p>
        ) : (
          <Chart key={shownMetric} title={`${shownMetric} (${lines.length} runs)`} lines={lines} height={300} />
        )}
      </Section>
    </>
  );
}
