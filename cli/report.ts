import { existsSync, readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join, relative, sep } from "node:path";
import { formatEpoch, formatFigure, stat, type MethodRow, type RunResult } from "./bench.js";
import type { Summary } from "../runtime/index.js";
import { logFields } from "../compiler/builtins/index.js";

/**
 * `mmb report <run-dir | bench-dir>`: one self-contained HTML file (Chart.js inlined, no
 * network) with the figures the papers use. A run: a header (spec, seed, backend, params, the
 * final metrics, the classes); per-modality gradient norms over steps, raw and after the actions,
 * and their share per epoch; every rule value over steps, titled with its spec line; loss;
 * train/valid/test metric and the unimodal metric of each modality per epoch (shares in %).
 * Step charts mark epoch boundaries, and the page can smooth them. A bench: the comparison
 * table, the test metric and each modality's unimodal metric with error bars (± one standard
 * deviation over runs); per epoch, each spec's test metric, unimodal metrics and shared rule
 * values with ± std bands; a link to each run's own report.
 */

/** A chart: Chart.js configuration, as data (the page adds the error-bar plugin). */
export interface ChartSpec {
  id: string;
  title: string;
  type: "line" | "bar";
  labels: (string | number)[];
  datasets: { label: string; data: (number | null)[]; errors?: number[] }[];
  stacked?: boolean;
  yLabel: string;
  xLabel: string;
  /** Step charts: the x positions where an epoch begins (dashed lines), and series the page's smoothing applies to. */
  boundaries?: number[];
  smooth?: boolean;
}

interface StepRecord {
  type: "step";
  epoch: number;
  step: number;
  [key: string]: unknown;
}

interface EpochRecord {
  type: "epoch";
  epoch: number;
  loss: number;
  train?: Record<string, number>;
  valid: Record<string, number>;
  test: Record<string, number>;
  unimodal: Record<string, number>;
  /** The `every epoch` rule's values, computed at the epoch's start. */
  rule?: Record<string, number | number[]>;
}

/** The log's records; a line that is not a whole record (a torn write) is skipped with a warning naming it. */
async function readLog(dir: string, warn: (line: string) => void): Promise<{ steps: StepRecord[]; epochs: EpochRecord[] }> {
  const path = join(dir, "log.jsonl");
  const records: (StepRecord | EpochRecord)[] = [];
  (await readFile(path, "utf8")).split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const record = JSON.parse(line) as StepRecord | EpochRecord;
      if (record && typeof record === "object" && (record.type === "step" || record.type === "epoch")) records.push(record);
      else if ((record as { type?: unknown } | null)?.type === "run") return; // the header naming the modalities
      else warn(`${path}:${i + 1}: not a step or epoch record; skipped`);
    } catch {
      warn(`${path}:${i + 1}: not valid JSON (a torn or edited line); skipped`);
    }
  });
  return { steps: records.filter((r): r is StepRecord => r.type === "step"), epochs: records.filter((r): r is EpochRecord => r.type === "epoch") };
}

const perModalityNames = (value: unknown, modalities: string[]) => (Array.isArray(value) && value.length === modalities.length ? modalities : undefined);

/** Metrics that are shares (accuracy, F1, Dice) are shown in %; errors (MAE) as they are. */
const isShare = (metric: string) => metric !== "mae";
const shown = (metric: string) => (v: number | null | undefined) => (v == null ? null : isShare(metric) ? 100 * v : v);
const axis = (metric: string) => (isShare(metric) ? `${metric} (%)` : metric);

/**
 * Each rule value's spec line, as the run's generated trainer comments it, for the charts' titles:
 * `// s[m] = sum(batch, prob(contrib[m], y))  (line 31)` in a tfjs run's trainer.ts, the same
 * after `#` in a torch run's trainer.py.
 */
function specLines(dir: string): Map<string, string> {
  const lines = new Map<string, string>();
  const path = ["trainer.ts", "trainer.py"].map((file) => join(dir, file)).find(existsSync);
  if (!path) return lines;
  for (const [, text, , line] of readFileSync(path, "utf8").matchAll(/^\s*(?:\/\/|#) (([A-Za-z_][A-Za-z0-9_]*)(?:\[\w+\])? = .*?)  \(line (\d+)\)$/gm)) {
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text!)![0];
    if (!lines.has(name)) lines.set(name, `${text} (spec line ${line})`);
  }
  return lines;
}

/** The step indices at which each epoch after the first begins. */
const epochStarts = (steps: StepRecord[]) => steps.flatMap((s, i) => (i > 0 && s.epoch !== steps[i - 1]!.epoch ? [i] : []));

/** The charts of one training run, from its log. */
const warnSkipped = (line: string) => console.error(`mmb: ${line}`);

export async function runCharts(dir: string, idPrefix = "run", warn: (line: string) => void = warnSkipped): Promise<{ charts: ChartSpec[]; title: string; header: string }> {
  const summary = existsSync(join(dir, "summary.json")) ? (JSON.parse(await readFile(join(dir, "summary.json"), "utf8")) as Partial<Summary> & { model: string; unimodal: Record<string, number> }) : undefined;
  const { steps, epochs } = await readLog(dir, warn);
  // Every modality, in the order of the log's per-modality arrays (the unimodal metrics may leave some out).
  const modalities = summary?.modalities ?? Object.keys(epochs[0]?.unimodal ?? summary?.unimodal ?? {});
  const stepLabels = steps.map((s) => s.step);
  const epochLabels = epochs.map((e) => e.epoch + 1);
  const metric = Object.keys(epochs[0]?.test ?? { acc: 0 })[0] ?? "acc";
  const charts: ChartSpec[] = [];
  const boundaries = epochStarts(steps);
  const lines = specLines(dir);
  const norms = steps.map((s) => s.grad_norm as number[]);
  charts.push({
    id: `${idPrefix}-grad-norm`,
    title: "Gradient norm of each encoder (raw, before any action)",
    type: "line",
    labels: stepLabels,
    datasets: modalities.map((m, i) => ({ label: m, data: norms.map((n) => n?.[i] ?? null) })),
    xLabel: "step",
    yLabel: "‖∂L/∂θ_m‖",
    boundaries,
    smooth: true,
  });
  // After the actions: what balancing changed (logs of an earlier mmb have none).
  if (steps.some((s) => s.update_grad_norm !== undefined)) {
    const updates = steps.map((s) => s.update_grad_norm as number[] | undefined);
    charts.push({
      id: `${idPrefix}-update-grad-norm`,
      title: "Gradient norm of each encoder after the actions (what the optimiser got, before clipping)",
      type: "line",
      labels: stepLabels,
      datasets: modalities.map((m, i) => ({ label: m, data: updates.map((n) => n?.[i] ?? null) })),
      xLabel: "step",
      yLabel: "‖g_m‖ after the actions",
      boundaries,
      smooth: true,
    });
  }
  charts.push({
    id: `${idPrefix}-grad-share`,
    title: "Share of the gradient norm per epoch",
    type: "bar",
    stacked: true,
    labels: epochLabels,
    datasets: modalities.map((m, i) => ({
      label: m,
      data: epochLabels.map((_, e) => {
        const mine = steps.filter((s) => s.epoch === e).map((s) => s.grad_norm as number[]);
        const total = mine.reduce((a, n) => a + n.reduce((x, y) => x + y, 0), 0);
        return total > 0 ? mine.reduce((a, n) => a + n[i]!, 0) / total : null;
      }),
    })),
    xLabel: "epoch",
    yLabel: "share",
  });
  const losses = [{ label: "task loss", data: steps.map((s) => s.loss as number) }];
  if (steps.some((s) => s.total_loss !== undefined && s.total_loss !== s.loss)) losses.push({ label: "total loss (with added losses)", data: steps.map((s) => (s.total_loss as number) ?? null) });
  charts.push({ id: `${idPrefix}-loss`, title: "Training loss per step", type: "line", labels: stepLabels, datasets: losses, xLabel: "step", yLabel: "loss", boundaries, smooth: true });
  const ruleValues = Object.keys(steps[0] ?? {}).filter((k) => !logFields.includes(k));
  for (const name of ruleValues) {
    const names = perModalityNames(steps[0]![name], modalities);
    const summarised = summary?.logged && Object.hasOwn(summary.logged, name) ? ` (${summary.logged[name]})` : "";
    charts.push({
      id: `${idPrefix}-value-${charts.length}`,
      title: `${lines.get(name) ?? `Rule value ${name}`}${summarised}`,
      type: "line",
      labels: stepLabels,
      datasets: names
        ? names.map((m, i) => ({ label: `${name}[${m}]`, data: steps.map((s) => (s[name] as number[])[i] ?? null) }))
        : [{ label: name, data: steps.map((s) => s[name] as number) }],
      xLabel: "step",
      yLabel: name,
      boundaries,
      smooth: true,
    });
  }
  // The epoch rule's values, one point per epoch (computed at its start, read by its steps).
  for (const name of Object.keys(epochs[0]?.rule ?? {})) {
    const names = perModalityNames(epochs[0]!.rule![name], modalities);
    charts.push({
      id: `${idPrefix}-epoch-value-${charts.length}`,
      title: `${lines.get(name) ?? `Epoch rule value ${name}`} (at each epoch's start)`,
      type: "line",
      labels: epochLabels,
      datasets: names
        ? names.map((m, i) => ({ label: `${name}[${m}]`, data: epochs.map((e) => (e.rule?.[name] as number[] | undefined)?.[i] ?? null) }))
        : [{ label: name, data: epochs.map((e) => (e.rule?.[name] as number | undefined) ?? null) }],
      xLabel: "epoch",
      yLabel: name,
    });
  }
  charts.push({
    id: `${idPrefix}-metric`,
    title: `${metric} per epoch`,
    type: "line",
    labels: epochLabels,
    datasets: (["train", "valid", "test"] as const).filter((split) => epochs[0]?.[split]).map((split) => ({ label: split, data: epochs.map((e) => shown(metric)(e[split]?.[metric])) })),
    xLabel: "epoch",
    yLabel: axis(metric),
  });
  charts.push({
    id: `${idPrefix}-unimodal`,
    title: `Unimodal ${metric} per epoch (test split, each modality alone)`,
    type: "line",
    labels: epochLabels,
    datasets: modalities.map((m) => ({ label: m, data: epochs.map((e) => shown(metric)(e.unimodal[m])) })),
    xLabel: "epoch",
    yLabel: axis(metric),
  });
  return { charts, title: summary?.model ?? basename(dir), header: summary ? runHeader(summary) : "" };
}

/** What made the run and how it ended, above its charts: spec, seed, backend, params, the last and the best validation epoch's test metric, the classes. */
function runHeader(s: Partial<Summary>): string {
  const params = Object.entries(s.params ?? {}).map(([k, v]) => `${k} = ${v}`).join(", ");
  const percent = (v: number) => (s.metric === "mae" ? v.toFixed(3) : `${(100 * v).toFixed(1)}%`);
  const items = [
    `spec <code>${escapeHtml(s.source ?? "")}</code>`,
    `seed ${s.seed}`,
    `backend ${escapeHtml(s.kernels ?? s.backend ?? "")}`,
    ...(params ? [`params ${escapeHtml(params)}`] : []),
    ...(s.test !== undefined ? [`test ${escapeHtml(s.metric ?? "")} ${percent(s.test)} at the last epoch`] : []),
    ...(s.best ? [`${percent(s.best.test)} at the best validation epoch (${s.best.epoch + 1})`] : []),
    ...(s.classes ? [`classes ${s.classes.map((c, i) => `${i} ${escapeHtml(c)}`).join(", ")}`] : []),
  ];
  return `<p class="header">${items.join(" · ")}</p>`;
}

/** Mean ± standard deviation at each position of series of unequal length (seeds × folds of one spec). */
function band(series: (number | null)[][], length: number): { data: (number | null)[]; errors: number[] } {
  const at = Array.from({ length }, (_, e) => stat(series.map((s) => s[e]).filter((v): v is number => v != null)));
  return { data: at.map((s) => (Number.isNaN(s.mean) ? null : s.mean)), errors: at.map((s) => (Number.isNaN(s.std) ? 0 : s.std)) };
}

/**
 * The charts of a bench: error bars over seeds; per epoch, each spec's mean ± std (a band) of the
 * test metric, of each modality's unimodal metric, and of every rule value the specs share (a
 * step value as its epoch mean).
 */
export async function benchCharts(dir: string): Promise<{ charts: ChartSpec[]; rows: MethodRow[]; runs: RunResult[] }> {
  const { rows, runs } = JSON.parse(await readFile(join(dir, "results.json"), "utf8")) as { rows: MethodRow[]; runs: RunResult[] };
  const charts: ChartSpec[] = [];
  const ok = rows.filter((r) => r.runs > r.failed);
  for (const metric of [...new Set(ok.map((r) => r.metric))]) {
    const mine = ok.filter((r) => r.metric === metric);
    const show = shown(metric);
    const scale = (v: number) => (isShare(metric) ? 100 * v : v);
    charts.push({
      id: `bench-test-${metric}`,
      title: `Test ${metric}, mean ± std over seeds`,
      type: "bar",
      labels: mine.map((r) => r.spec),
      datasets: [{ label: `test ${metric}`, data: mine.map((r) => show(r.test.mean)), errors: mine.map((r) => scale(r.test.std)) }],
      xLabel: "spec",
      yLabel: axis(metric),
    });
    const modalities = [...new Set(mine.flatMap((r) => Object.keys(r.unimodal)))];
    charts.push({
      id: `bench-unimodal-${metric}`,
      title: `Unimodal ${metric} of each modality, mean ± std over seeds`,
      type: "bar",
      labels: mine.map((r) => r.spec),
      datasets: modalities.map((m) => ({ label: m, data: mine.map((r) => show(r.unimodal[m]?.mean)), errors: mine.map((r) => scale(r.unimodal[m]?.std ?? 0)) })),
      xLabel: "spec",
      yLabel: axis(metric),
    });
  }
  // Per epoch, per spec: the logs of its runs.
  const logs = new Map<string, { steps: StepRecord[]; epochs: EpochRecord[]; modalities: string[] }[]>();
  for (const run of runs) {
    if (!run.summary || !existsSync(join(run.dir, "log.jsonl"))) continue;
    const log = await readLog(run.dir, warnSkipped);
    logs.set(run.spec, [...(logs.get(run.spec) ?? []), { ...log, modalities: run.summary.modalities ?? Object.keys(run.summary.unimodal) }]);
  }
  const length = Math.max(0, ...[...logs.values()].flatMap((l) => l.map((r) => r.epochs.length)));
  const labels = Array.from({ length }, (_, i) => i + 1);
  const curves = (id: string, title: string, yLabel: string, series: (log: { steps: StepRecord[]; epochs: EpochRecord[]; modalities: string[] }) => (number | null)[] | undefined) => {
    const datasets = [...logs].flatMap(([spec, runsOfSpec]) => {
      const mine = runsOfSpec.map(series).filter((s): s is (number | null)[] => s !== undefined);
      return mine.length ? [{ label: spec, ...band(mine, length) }] : [];
    });
    if (datasets.length) charts.push({ id, title, type: "line", labels, datasets, xLabel: "epoch", yLabel });
  };
  const metrics = [...new Set([...logs.values()].flatMap((l) => l.flatMap((r) => Object.keys(r.epochs[0]?.test ?? {}).slice(0, 1))))];
  for (const metric of metrics) {
    curves(`bench-curves-${metric}`, `Test ${metric} per epoch, mean ± std over runs`, axis(metric), (r) => r.epochs.map((e) => shown(metric)(e.test[metric])));
    const modalities = [...new Set([...logs.values()].flatMap((l) => l.flatMap((r) => r.modalities)))];
    for (const m of modalities) {
      curves(`bench-unimodal-curves-${metric}-${m}`, `Unimodal ${metric} of ${m} per epoch, mean ± std over runs`, axis(metric), (r) => (r.modalities.includes(m) ? r.epochs.map((e) => shown(metric)(e.unimodal[m])) : undefined));
    }
  }
  // Rule values more than one spec logs (the baseline's `gnorm[m]` and a method's): epoch means of the step values.
  const valueNames = (r: { steps: StepRecord[] }) => Object.keys(r.steps[0] ?? {}).filter((k) => !logFields.includes(k));
  const specsLogging = new Map<string, Set<string>>();
  for (const [spec, runsOfSpec] of logs) for (const name of valueNames(runsOfSpec[0]!)) specsLogging.set(name, (specsLogging.get(name) ?? new Set()).add(spec));
  for (const [name, specs] of specsLogging) {
    if (specs.size < 2) continue;
    const epochMean = (r: { steps: StepRecord[]; epochs: EpochRecord[] }, pick: (v: unknown) => number | undefined) =>
      r.epochs.map((e) => {
        const values = r.steps.filter((s) => s.epoch === e.epoch).map((s) => pick(s[name])).filter((v): v is number => typeof v === "number");
        return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
      });
    const first = [...logs.values()].flatMap((l) => l).find((r) => r.steps[0]?.[name] !== undefined)!;
    const perModality = perModalityNames(first.steps[0]![name], first.modalities);
    for (const [i, m] of (perModality ?? [undefined]).entries()) {
      const label = m === undefined ? name : `${name}[${m}]`;
      curves(`bench-value-${label}`, `${label} per epoch (mean of its steps), mean ± std over runs`, label, (r) => (r.steps[0]?.[name] === undefined ? undefined : epochMean(r, (v) => (m === undefined ? (v as number) : (v as number[])[i]))));
    }
  }
  return { charts, rows, runs };
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** JSON that cannot close the <script> element it is embedded in. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");

function table(rows: MethodRow[]): string {
  const body = rows
    .map((r) => {
      const n = r.runs - r.failed;
      const unimodal = Object.entries(r.unimodal).map(([m, s]) => `${escapeHtml(m)} ${formatFigure(s, n)}`).join("<br>");
      return `<tr><td>${escapeHtml(r.spec)}</td><td>${escapeHtml(r.metric)} ${formatFigure(r.test, n)}</td><td>${unimodal || "—"}</td><td>${formatEpoch(r.epoch, n)}</td><td>${formatFigure(r.secondsPerEpoch, n, 2)}</td><td>${escapeHtml(r.backends.join(", "))}</td><td>${n}/${r.runs}</td></tr>`;
    })
    .join("\n");
  // Which epoch the figures are of (a bench of an earlier mmb had only the last).
  const select = rows[0]?.select === "best" ? "at each run's best validation epoch" : "at each run's last epoch";
  return `<p>Test and unimodal figures ${select}.</p><table><thead><tr><th>spec</th><th>test</th><th>unimodal</th><th>epoch</th><th>s/epoch</th><th>backend</th><th>runs ok</th></tr></thead><tbody>${body}</tbody></table>`;
}

/** The page: Chart.js inlined, the charts as data, a small plugin that draws error bars. */
export function page(title: string, charts: ChartSpec[], preface = ""): string {
  // The UMD build is not in the package's exports: find it next to the resolved entry point.
  const chartJs = readFileSync(join(dirname(createRequire(import.meta.url).resolve("chart.js")), "chart.umd.min.js"), "utf8");
  const figures = charts.map((c) => `<figure><figcaption>${escapeHtml(c.title)}</figcaption><div class="chart"><canvas id="${escapeHtml(c.id)}"></canvas></div></figure>`).join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)} — mmb report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 8px 24px; }
figure { margin: 8px 0 16px; min-width: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.chart { position: relative; height: 300px; }
table { border-collapse: collapse; margin: 12px 0 24px; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
</style>
<script>${chartJs}</script>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${preface}
${charts.some((c) => c.smooth) ? '<p><label>smoothing of the step curves <select id="smoothing"><option value="0">none</option><option value="0.6">0.6</option><option value="0.9">0.9</option><option value="0.99">0.99</option></select></label> (an exponential moving average, debiased; dashed lines: epoch boundaries)</p>' : ""}
<div class="figures">
${figures}
</div>
<script>
const charts = ${scriptJson(charts)};
// Epoch boundaries on step axes: a dashed line where each epoch begins.
const epochLines = {
  id: "epochLines",
  afterDatasetsDraw(chart) {
    const boundaries = chart.config.options.boundaries;
    if (!boundaries) return;
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    ctx.strokeStyle = "#999";
    ctx.setLineDash([4, 4]);
    for (const i of boundaries) {
      const x = scales.x.getPixelForValue(i);
      ctx.beginPath(); ctx.moveTo(x, chartArea.top); ctx.lineTo(x, chartArea.bottom); ctx.stroke();
    }
    ctx.restore();
  },
};
// ± one standard deviation: error bars on bar charts, a shaded band on line charts.
const errorBars = {
  id: "errorBars",
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    chart.data.datasets.forEach((dataset, d) => {
      if (!dataset.errors) return;
      const meta = chart.getDatasetMeta(d);
      const scale = chart.scales.y;
      if (chart.config.type === "line") {
        const points = meta.data.map((p, i) => ({ x: p.x, value: dataset.data[i], error: dataset.errors[i] ?? 0 })).filter((p) => p.value != null);
        if (points.length < 2) return;
        ctx.save();
        ctx.fillStyle = meta.dataset?.options?.borderColor || meta.data[0]?.options?.borderColor || "#888";
        ctx.globalAlpha = 0.15;
        ctx.beginPath();
        points.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, p.x, scale.getPixelForValue(p.value + p.error)));
        [...points].reverse().forEach((p) => ctx.lineTo(p.x, scale.getPixelForValue(p.value - p.error)));
        ctx.closePath();
        ctx.fill();
        ctx.restore();
        return;
      }
      meta.data.forEach((bar, i) => {
        const value = dataset.data[i];
        const error = dataset.errors[i];
        if (value == null || !error) return;
        const top = scale.getPixelForValue(value + error);
        const bottom = scale.getPixelForValue(value - error);
        ctx.save();
        ctx.strokeStyle = "#222";
        ctx.beginPath();
        ctx.moveTo(bar.x, top); ctx.lineTo(bar.x, bottom);
        ctx.moveTo(bar.x - 4, top); ctx.lineTo(bar.x + 4, top);
        ctx.moveTo(bar.x - 4, bottom); ctx.lineTo(bar.x + 4, bottom);
        ctx.stroke();
        ctx.restore();
      });
    });
  },
};
// TensorBoard's smoothing: an exponential moving average, debiased for its first points.
function smoothed(data, weight) {
  if (!weight) return data;
  let last = 0, count = 0;
  return data.map((v) => {
    if (v == null) return null;
    last = last * weight + (1 - weight) * v;
    count++;
    return last / (1 - Math.pow(weight, count));
  });
}
const drawn = charts.map((spec) =>
  new Chart(document.getElementById(spec.id), {
    type: spec.type,
    data: { labels: spec.labels, datasets: spec.datasets.map((d) => ({ ...d, pointRadius: spec.labels.length > 60 ? 0 : 2, borderWidth: 1.5 })) },
    options: {
      animation: false,
      maintainAspectRatio: false,
      boundaries: spec.boundaries,
      scales: {
        x: { stacked: !!spec.stacked, title: { display: true, text: spec.xLabel } },
        y: { stacked: !!spec.stacked, title: { display: true, text: spec.yLabel } },
      },
    },
    plugins: [errorBars, epochLines],
  }),
);
document.getElementById("smoothing")?.addEventListener("change", (event) => {
  const weight = Number(event.target.value);
  charts.forEach((spec, c) => {
    if (!spec.smooth) return;
    drawn[c].data.datasets.forEach((d, i) => (d.data = smoothed(spec.datasets[i].data, weight)));
    drawn[c].update();
  });
});
</script>
</body>
</html>
`;
}

/** Writes the report of a run or bench directory; returns the file written. */
export async function report(dir: string, output?: string): Promise<string> {
  let html: string;
  if (existsSync(join(dir, "results.json"))) {
    const { charts, rows, runs } = await benchCharts(dir);
    // Each run's own report, linked from the bench's.
    const links: string[] = [];
    for (const run of runs) {
      if (!run.summary || !existsSync(join(run.dir, "log.jsonl"))) continue;
      await report(run.dir);
      const name = `${run.spec} seed ${run.seed}${run.fold === undefined ? "" : ` fold ${run.fold}`}`;
      links.push(`<a href="${escapeHtml(relative(dir, join(run.dir, "report.html")).split(sep).join("/"))}">${escapeHtml(name)}</a>`);
    }
    html = page(`Benchmark: ${basename(dir)}`, charts, `${table(rows)}${links.length ? `<p>Each run's report: ${links.join(" · ")}</p>` : ""}`);
  } else if (existsSync(join(dir, "log.jsonl"))) {
    const { charts, title, header } = await runCharts(dir);
    html = page(`Run: ${title}`, charts, header);
  } else {
    throw new Error(`${dir}: neither a run (log.jsonl) nor a bench (results.json)`);
  }
  const file = output ?? join(dir, "report.html");
  await writeFile(file, html);
  return file;
}
