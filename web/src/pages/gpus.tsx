import { useEffect } from "react";
import { Link } from "react-router-dom";
import { sdk, type Gpu } from "../api";
import { ErrorBox, formatBytes, useActivity, useLoad } from "../ui";

// NVML readings change without any event; a real inventory is re-read this often.
const READINGS_SECONDS = 5;

export function GpusPage() {
  const gpus = useLoad(() => sdk((client) => client.gpus.list()), []);
  useActivity(() => gpus.reload());
  const hasReadings = (gpus.data ?? []).some((gpu) => !gpu.virtual);
  useEffect(() => {
    if (!hasReadings) return;
    const timer = window.setInterval(gpus.reload, READINGS_SECONDS * 1000);
    return () => window.clearInterval(timer);
  }, [hasReadings, gpus.reload]);
  const nodes = new Map<string, Gpu[]>();
  for (const gpu of gpus.data ?? []) nodes.set(gpu.node, [...(nodes.get(gpu.node) ?? []), gpu]);
  return (
    <>
      <h1>GPUs</h1>
      <ErrorBox error={gpus.error} />
      {gpus.data?.length === 0 && <p className="muted">This server has no GPUs.</p>}
      {[...nodes.entries()].map(([node, list]) => (
        <section className="card" key={node} aria-label={`Node ${node}`}>
          <header className="card-head">
            <h2>{node}</h2>
            {list.some((gpu) => gpu.virtual) && <span className="badge">virtual inventory: no readings</span>}
          </header>
          <div className="gpu-grid">
            {list.map((gpu) => (
              <article key={`${gpu.node}-${gpu.id}`} className={`gpu ${gpu.in_use ? "busy" : "free"}`} data-testid="gpu">
                <h3>
                  GPU {gpu.id} <small>{gpu.name}</small>
                </h3>
                <p>{gpu.in_use ? (gpu.job_id ? <Link to={`/jobs/${gpu.job_id}`}>{gpu.job_id}</Link> : "in use") : "free"}</p>
                {gpu.virtual ? (
                  <p className="muted">{formatBytes(gpu.memory_total)} · no readings (virtual)</p>
                ) : (
                  <>
                    <Meter label="Utilization" value={gpu.utilization} max={100} text={gpu.utilization === null ? "–" : `${gpu.utilization}%`} />
                    <Meter
                      label="Memory"
                      value={gpu.memory_used}
                      max={gpu.memory_total}
                      text={gpu.memory_used === null ? formatBytes(gpu.memory_total) : `${formatBytes(gpu.memory_used)} / ${formatBytes(gpu.memory_total)}`}
                    />
                    {gpu.temperature !== null && <p className="muted">{gpu.temperature} °C</p>}
                  </>
                )}
              </article>
            ))}
          </div>
        </section>
      ))}
    </>
  );
}

function Meter({ label, value, max, text }: { label: string; value: number | null; max: number | null; text: string }) {
  return (
    <div className="meter">
      <span>{label}</span>
      <progress value={value ?? 0} max={max ?? 100} aria-label={label} />
      <span>{text}</span>
    </div>
  );
}
