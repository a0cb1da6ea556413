import { Link } from "react-router-dom";
import { sdk } from "../api";
import { ErrorBox, formatTime, Status, useLoad } from "../ui";

export function EvaluationsPage() {
  const list = useLoad(() => sdk((client) => client.evaluations.list({ limit: 100 })), []);
  return (
    <>
      <h1>Evaluations</h1>
      <ErrorBox error={list.error} />
      <table>
        <thead>
          <tr>
            <th>Benchmark</th>
            <th>Model</th>
            <th>Status</th>
            <th>Progress</th>
            <th>Score</th>
            <th>Job</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.items.map((e) => (
            <tr key={e.id}>
              <td>{e.benchmark}</td>
              <td>
                <Link to={`/models/${e.model_id}`}>{e.model_id}</Link>
              </td>
              <td>
                <Status status={e.status} /> {e.status_reason}
              </td>
              <td>{e.questions_total ? `${e.questions_done ?? 0} / ${e.questions_total}` : "–"}</td>
              <td>{e.score === null ? "–" : `${e.score_name ?? ""} ${e.score}`}</td>
              <td>{e.job_id ? <Link to={`/jobs/${e.job_id}`}>{e.job_id}</Link> : "–"}</td>
              <td>{formatTime(e.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function LeaderboardPage() {
  const board = useLoad(() => sdk((client) => client.leaderboard.get()), []);
  return (
    <>
      <h1>Leaderboard</h1>
      <ErrorBox error={board.error} />
      <table>
        <thead>
          <tr>
            <th>Rank</th>
            <th>Model</th>
            <th>Benchmark</th>
            <th>Score</th>
            <th>Evaluated</th>
          </tr>
        </thead>
        <tbody>
          {board.data?.items.map((row) => (
            <tr key={`${row.model_id}-${row.benchmark}`}>
              <td>{row.rank}</td>
              <td>
                <Link to={`/models/${row.model_id}`}>
                  {row.model_name} {row.model_version}
                </Link>
              </td>
              <td>{row.benchmark}</td>
              <td>
                {row.metric} {row.score}
              </td>
              <td>{formatTime(row.evaluated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function DeploymentsPage() {
  const list = useLoad(() => sdk((client) => client.deployments.list({ limit: 100 })), []);
  return (
    <>
      <h1>Deployments</h1>
      <ErrorBox error={list.error} />
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Model</th>
            <th>Backend</th>
            <th>Status</th>
            <th>Replicas</th>
            <th>Endpoint</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.items.map((d) => (
            <tr key={d.id}>
              <td>{d.name}</td>
              <td>
                <Link to={`/models/${d.model_id}`}>{d.model_id}</Link>
              </td>
              <td>{d.backend}</td>
              <td>
                <Status status={d.status} /> {d.status_reason}
              </td>
              <td>
                {d.healthy_replicas} / {d.replicas}
              </td>
              <td>
                <code>{d.endpoint}</code>
              </td>
              <td>{formatTime(d.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
