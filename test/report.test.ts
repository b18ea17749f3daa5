import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aggregate, type RunResult } from "../cli/bench.js";
import { loadTrainer } from "../cli/load-trainer.js";
import { report, runCharts } from "../cli/report.js";
import { compile } from "../compiler/index.js";
import { train, type Summary } from "../runtime/index.js";
import { compileOrThrow, smallSpec } from "./helpers.js";

/** Debian's chromium; .ci/run installs it and sets MMB_REQUIRE_BROWSER so that CI never skips. */
const browserPath = process.env.MMB_CHROMIUM ?? "/usr/bin/chromium";
const available = existsSync(browserPath);
if (!available && process.env.MMB_REQUIRE_BROWSER) throw new Error(`no browser at ${browserPath}: install Debian's chromium`);

const smallRule = smallSpec("  s[m] = sum(batch, prob(contrib[m], y))\n  k[m] = 1 - tanh(0.5 * relu(s[m] / s[other(m)] - 1))\n  scale grad(encoder[m]) by k[m]", "every epoch {\n  v[m] = over(valid, nll(contrib[m], y))\n}");

async function trainSmall(out: string, seed: number): Promise<Summary> {
  return train(await loadTrainer(await compileOrThrow(smallRule), out), { out, backend: "wasm", seed, log: () => {} });
}

describe("a report's titles", () => {
  it("name each rule value by its spec line, read from the run's trainer: trainer.ts of a tfjs run, trainer.py of a torch run", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-report-titles-"));
    const tfjs = join(dir, "tfjs");
    await trainSmall(tfjs, 1);
    // A torch run's folder: the same log and summary, and the torch trainer of the same spec.
    const torch = join(dir, "torch");
    mkdirSync(torch);
    for (const file of ["log.jsonl", "summary.json"]) copyFileSync(join(tfjs, file), join(torch, file));
    writeFileSync(join(torch, "trainer.py"), (await compile(smallRule, { target: "torch" })).code!);
    for (const run of [tfjs, torch]) {
      const titles = (await runCharts(run, "run", () => {})).charts.map((c) => c.title);
      expect(titles, run).toContain("s[m] = sum(batch, prob(contrib[m], y)) (spec line 15)");
      expect(titles, run).toContain("v[m] = over(valid, nll(contrib[m], y)) (spec line 12) (at each epoch's start)");
    }
  });
});

describe.skipIf(!available)("mmb report in a headless browser", () => {
  let browser: Browser;
  const dir = mkdtempSync(join(tmpdir(), "mmb-report-"));

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox"] });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Loads a report; returns console errors, points drawn per chart and inked pixels per canvas. */
  async function open(file: string) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`file://${file}`);
    const charts = await page.evaluate(() => {
      const Chart = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { data: { datasets: { data: (number | null)[] }[] } } | undefined } }).Chart;
      return [...document.querySelectorAll("canvas")].map((canvas) => {
        const chart = Chart.getChart(canvas);
        const points = chart ? chart.data.datasets.reduce((n, d) => n + d.data.filter((v) => v !== null && Number.isFinite(v)).length, 0) : 0;
        const pixels = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let inked = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) inked++;
        return { id: canvas.id, points, inked };
      });
    });
    const screenshot = await page.screenshot({ fullPage: true });
    // The smoothing control, where the page has one: the loss curve before and after choosing 0.9.
    const smoothing = await page.evaluate(() => {
      const select = document.getElementById("smoothing") as HTMLSelectElement | null;
      const Chart = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { data: { datasets: { data: (number | null)[] }[] } } | undefined } }).Chart;
      const loss = [...document.querySelectorAll("canvas")].find((c) => c.id.endsWith("-loss"));
      if (!select || !loss) return undefined;
      const boundaries = (Chart.getChart(loss) as unknown as { config: { options: { boundaries?: number[] } } }).config.options.boundaries;
      const before = [...Chart.getChart(loss)!.data.datasets[0]!.data];
      select.value = "0.9";
      select.dispatchEvent(new Event("change"));
      return { before, after: [...Chart.getChart(loss)!.data.datasets[0]!.data], boundaries };
    });
    const html = await page.content();
    await page.close();
    return { errors, charts, screenshot, smoothing, html };
  }

  it("a run's report: every figure of the papers, drawn with data, no console errors", async () => {
    const run = join(dir, "run");
    await trainSmall(run, 1);
    const file = await report(run);
    expect(file).toBe(join(run, "report.html"));
    const { errors, charts, screenshot, smoothing, html } = await open(file);
    expect(errors).toEqual([]);
    expect(charts.map((c) => c.id)).toEqual(["run-grad-norm", "run-update-grad-norm", "run-grad-share", "run-loss", "run-value-4", "run-value-5", "run-epoch-value-6", "run-metric", "run-unimodal"]);
    // The header, titles from the spec's lines, accuracy in %, and the smoothing of step curves.
    expect(html).toMatch(/seed 1 · backend wasm[^<]*· test accuracy \d+\.\d% at the last epoch · \d+\.\d% at the best validation epoch \(\d+\)/);
    expect(html).toContain("s[m] = sum(batch, prob(contrib[m], y)) (spec line 15)");
    expect(html).toContain("acc (%)");
    expect(smoothing!.after[0]).toBeCloseTo(smoothing!.before[0]!, 10); // debiased: the first point is itself
    // A dashed line where the second epoch begins: after the first epoch's steps.
    const firstEpochSteps = readFileSync(join(run, "log.jsonl"), "utf8").split("\n").filter((l) => l.includes('"type":"step","epoch":0')).length;
    expect(smoothing!.boundaries).toEqual([firstEpochSteps]);
    expect(smoothing!.after.slice(1)).not.toEqual(smoothing!.before.slice(1));
    for (const chart of charts) {
      expect(chart.points, chart.id).toBeGreaterThan(0);
      expect(chart.inked, chart.id).toBeGreaterThan(2000);
    }
    expect(screenshot.length).toBeGreaterThan(50_000); // a blank page compresses to a few kB
  });

  it("a bench's report: the comparison table, error bars over seeds, curves with ± std bands of the metrics and the shared rule values, links to each run's report", async () => {
    const runs: RunResult[] = [];
    for (const spec of ["small", "other"]) {
      for (const seed of [1, 2]) {
        const out = join(dir, "bench", spec, `seed-${seed}`);
        runs.push({ spec, seed, dir: out, summary: await trainSmall(out, seed) });
      }
    }
    runs.push({ spec: "broken", seed: 1, dir: join(dir, "bench", "broken"), error: "non-finite value of `x`" });
    writeFileSync(join(dir, "bench", "results.json"), JSON.stringify({ command: "test", rows: aggregate(runs), runs }));
    const { errors, charts, html } = await open(await report(join(dir, "bench")));
    expect(errors).toEqual([]);
    expect(charts.map((c) => c.id)).toEqual([
      "bench-test-accuracy",
      "bench-unimodal-accuracy",
      "bench-curves-acc",
      "bench-unimodal-curves-acc-a",
      "bench-unimodal-curves-acc-b",
      "bench-value-s[a]",
      "bench-value-s[b]",
      "bench-value-k[a]",
      "bench-value-k[b]",
    ]);
    for (const chart of charts) expect(chart.points, chart.id).toBeGreaterThan(0);
    // The table's figures as `mmb bench` prints them: mean ± std over the two seeds; none for the broken spec's no run.
    const small = aggregate(runs)[0]!;
    expect(html).toContain(`<td>small</td><td>accuracy ${small.test.mean.toFixed(3)} ± ${small.test.std.toFixed(3)}</td>`);
    // The epoch counted from 1, as in mmb bench's table and the run's own report.
    expect(html).toContain(`<td>${(small.epoch.mean + 1).toFixed(1)} ± ${small.epoch.std.toFixed(1)}</td><td>${small.secondsPerEpoch.mean.toFixed(2)} ± `);
    expect(html).toContain("<td>broken</td><td>accuracy —</td><td>—</td><td>—</td><td>—</td><td></td><td>0/1</td>");
    for (const run of runs.filter((r) => r.summary)) {
      expect(html).toContain(`href="${run.spec}/seed-${run.seed}/report.html"`);
      expect(existsSync(join(run.dir, "report.html"))).toBe(true);
    }
  });
});
