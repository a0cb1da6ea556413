import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

export interface Line {
  label: string;
  steps: number[];
  values: number[];
}

interface ChartOptions {
  title: string;
  width?: number;
  height?: number;
  /** Called with the step range the user dragged over; the owner fetches it at full detail. */
  onZoom?: (min: number, max: number) => void;
  /** Called on double-click: back to the whole run. */
  onReset?: () => void;
}

function aligned(lines: Line[]): uPlot.AlignedData {
  if (lines.length === 1) return [lines[0].steps, lines[0].values];
  return uPlot.join(lines.map((line) => [line.steps, line.values] as uPlot.AlignedData));
}

function makePlot(element: HTMLElement, labels: string[], data: uPlot.AlignedData, options: ChartOptions) {
  const dark = document.documentElement.dataset.theme === "dark";
  const axis = { stroke: dark ? "#cbd5e1" : "#334155", grid: { stroke: dark ? "#334155" : "#e2e8f0" } };
  return new uPlot(
    {
      title: options.title,
      width: options.width ?? Math.max(320, element.clientWidth || 560),
      height: options.height ?? 220,
      scales: { x: { time: false } },
      axes: [axis, axis],
      cursor: { drag: { x: true, y: false, setScale: false } },
      series: [
        { label: "step" },
        ...labels.map((label, i) => ({
          label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: false },
        })),
      ],
      hooks: {
        setSelect: [
          (u: uPlot) => {
            if (u.select.width < 3 || !options.onZoom) return;
            const min = Math.floor(u.posToVal(u.select.left, "x"));
            const max = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            options.onZoom(min, max);
          },
        ],
      },
    },
    data,
    element,
  );
}

/** A static chart of one or more lines (overlaid runs), re-drawn when `lines` change. */
export function Chart({ lines, ...options }: ChartOptions & { lines: Line[] }) {
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const labels = lines.map((line) => line.label).join("\u0000");
  useEffect(() => {
    if (!holder.current) return;
    plot.current?.destroy();
    plot.current = makePlot(holder.current, lines.map((l) => l.label), aligned(lines), options);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // Rebuilt when the set of lines changes; new data for the same lines is set below.
  }, [labels, options.title]);
  useEffect(() => {
    plot.current?.setData(aligned(lines));
  }, [lines]);
  return (
    <div
      className="chart"
      ref={holder}
      data-testid={`chart-${options.title}`}
      onDoubleClick={options.onReset}
      title={options.onZoom ? "Drag to zoom in; double-click to see the whole run" : undefined}
    />
  );
}

/**
 * A chart fed point by point: `append` buffers, and one animation frame draws everything
 * that arrived since the last (a thousand points a second cost sixty redraws, not a thousand).
 */
export class LiveSeries {
  steps: number[] = [];
  values: number[] = [];
  zoomed = false;
  plot: uPlot | null = null;
  private pending = false;

  constructor(readonly name: string) {}

  replace(steps: number[], values: number[]): void {
    this.steps = steps;
    this.values = values;
    this.draw();
  }

  append(step: number, value: number): void {
    const last = this.steps.length ? this.steps[this.steps.length - 1] : -Infinity;
    // A point the history already holds (read while the stream began) is not drawn twice.
    if (step <= last) return;
    this.steps.push(step);
    this.values.push(value);
    if (!this.zoomed) this.draw();
  }

  draw(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      if (!this.plot) return;
      this.plot.setData([this.steps, this.values], !this.zoomed);
      // Read by the end-to-end tests: how many points this chart holds now.
      const holder = this.plot.root.parentElement;
      if (holder) holder.dataset.points = String(this.steps.length);
      renderedFrames++;
    });
  }

  mount(element: HTMLElement, options: ChartOptions): void {
    this.plot?.destroy();
    this.plot = makePlot(element, [this.name], [this.steps, this.values], options);
    element.dataset.points = String(this.steps.length);
  }

  unmount(): void {
    this.plot?.destroy();
    this.plot = null;
  }
}

// Redraws so far, read by the end-to-end benchmark.
let renderedFrames = 0;
(window as unknown as { sparkCharts: { frames: () => number } }).sparkCharts = {
  frames: () => renderedFrames,
};

export function LiveChart({ series, ...options }: ChartOptions & { series: LiveSeries }) {
  const holder = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!holder.current) return;
    series.mount(holder.current, options);
    return () => series.unmount();
  }, [series]);
  return (
    <div
      className="chart"
      ref={holder}
      data-testid={`chart-${series.name}`}
      onDoubleClick={options.onReset}
      title="Drag to zoom in; double-click to see the whole run"
    />
  );
}
