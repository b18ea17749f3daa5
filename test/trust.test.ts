import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { analyze } from "../compiler/index.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { runCharts } from "../cli/report.js";
import { claimRunFolder, ResumeError, RunFolderError, type TrainOptions } from "../runtime/index.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, diagnose, fixedData, smallSpec } from "./helpers.js";

/**
 * No silent wrong results: each case here trained the wrong thing, mixed two runs, kept a broken
 * checkpoint or lost a value without a word before (docs/robustness.md lists them).
 */
const quiet = { backend: "cpu", log: () => {} } as const;
const fresh = () => mkdtempSync(join(tmpdir(), "mmb-trust-"));
/** The run's step and epoch records (after the header naming the modalities). */
const logOf = (out: string) =>
  readFileSync(join(out, "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((r) => r.type !== "run");
const oneEpoch = (balance = "", extra = "") => smallSpec(balance, extra).replace("train epochs 2", "train epochs 1");

async function run(spec: string, out: string, options: Partial<TrainOptions> = {}) {
  const trainer = await loadTrainer(await compileOrThrow(spec), out);
  return train(trainer, { out, ...quiet, ...options });
}

describe("the checker refuses what would train the wrong thing", () => {
  it("an unknown name in brackets is a mistake, not a loop over every modality", () => {
    expect(diagnose(smallSpec("scale grad(encoder[text]) by 0.5"))).toEqual(["MMB009 13:20-13:24"]);
    expect(analyze(smallSpec("scale grad(encoder[bbbb]) by 0.5").replace("modality b ", "modality bbb ")).diagnostics[0]).toMatchObject({ code: "MMB005", help: "did you mean `bbb`?" });
    expect(diagnose(smallSpec("scale grad(encoder[m]) by 0.5"))).toEqual([]);
  });

  it("settings that check clean and then fail or run forever get coded diagnostics", () => {
    expect(diagnose(smallSpec().replace("batch 16", "batch 0"))).toEqual(["MMB012 10:22-10:23"]);
    expect(diagnose(smallSpec().replace("sgd(lr: 0.1)", "sgd(lr: -0.1)"))).toEqual(["MMB012 9:19-9:23"]);
    expect(diagnose(smallSpec("", "schedule step(every: 0)"))).toEqual(["MMB012 11:22-11:23"]);
    expect(diagnose(smallSpec("param x = 1e999"))).toEqual(["MMB019 13:11-13:16"]);
    expect(diagnose(smallSpec().replace("seed: 3)", "seed: 3, valid: 0.6, test: 0.5)"))).toEqual(["MMB012 2:6-2:86"]);
  });

  it("reductions over the other modalities and film need two modalities (MMB030)", () => {
    const one = smallSpec("s = sum(k != a, acc(alone[k], y))").replace("modality b : float[6]\n", "");
    expect(diagnose(one)).toEqual(["MMB030 12:9-12:15"]);
    expect(diagnose(smallSpec().replace("modality b : float[6]\n", "").replace("fusion concat", "fusion film(by: a)"))).toEqual(["MMB030 6:8-6:19"]);
  });

  it("a modality the fusion never reads is a warning, and the run reports no unimodal metric for it", async () => {
    const spec = oneEpoch().replace("fusion concat -> linear(4)", "fusion 2 * z[a] -> linear(4)").replace("out: 5)", "out: 4)");
    expect(analyze(spec).diagnostics.map((d) => [d.code, d.severity])).toEqual([["MMB031", "warning"]]);
    const summary = await run(spec, fresh(), { data: fixedData() });
    expect(Object.keys(summary.unimodal)).toEqual(["a"]);
    expect(summary.modalities).toEqual(["a", "b"]);
  });

  it("a UTF-8 byte-order mark is accepted; nesting beyond the documented limits is MMB032, never a crash", () => {
    expect(diagnose("\uFEFF" + smallSpec())).toEqual([]);
    const body = {
      "800 nested brackets": `x = ${"(".repeat(800)}1${")".repeat(800)}`,
      "a 3,000-term sum": `x = ${Array(3000).fill("1").join(" + ")}`,
      "500 nested calls": `x = ${"abs(".repeat(500)}1${")".repeat(500)}`,
      "3,000 nested if": `x = ${"if step > 1 then 1 else ".repeat(3000)}0`,
    };
    for (const [name, text] of Object.entries(body)) expect(analyze(smallSpec(text)).diagnostics.map((d) => d.code), name).toEqual(["MMB032"]);
    expect(diagnose(smallSpec(`x = ${Array(200).fill("1").join(" + ")}`))).toEqual([]);
  });

  it("a rule value named like a reduction's index is reported once, where the clash is", () => {
    const spec = smallSpec("k[m] = 1\n s[m] = mean(k != m, k[k])");
    expect(analyze(spec).diagnostics.map((d) => [d.code, d.message])).toEqual([["MMB007", "`k` already names a rule value, so it cannot be the index of `mean`"]]);
  });
});

describe("the step log says what the step computed", () => {
  it("contrib[m] of a fusion linear in the features: the shares add up to the output, and equal alone[m] while the head's bias is 0", async () => {
    const spec = oneEpoch(
      `total = sum(batch, prob(contrib[a] + contrib[b] - out, y))
  first = sum(batch, prob(contrib[a] - alone[a], y))`,
      "learnable w[m] = 0.5",
    ).replace("fusion concat -> linear(4)", "fusion concat(j, w[j] * z[j]) -> linear(4)");
    const out = fresh();
    await run(spec, out, { data: fixedData() });
    // Zero logits give each of the 4 classes probability 1/4: the sum over 16 samples is 4.
    const [step] = logOf(out);
    expect(step.total).toBeCloseTo(4, 5);
    expect(step.first).toBeCloseTo(4, 5);
  });

  it("a learnable's value is logged as the step computed it, before the optimiser moved it", async () => {
    const spec = oneEpoch("wv[m] = w[m]", "learnable w[m] = 1").replace("fusion concat -> linear(4)", "fusion concat(j, w[j] * z[j]) -> linear(4)");
    const out = fresh();
    await run(spec, out, { data: fixedData() });
    const [step] = logOf(out);
    expect(step.wv).toEqual([1, 1]);
  });

  it("a per-sample value is logged as its batch mean, and the summary says so; the total loss is logged beside the task loss", async () => {
    const out = fresh();
    const summary = await run(oneEpoch("ps = prob(out, y)\n pm = mean(batch, prob(out, y))\n hit = acc(out, y)\n add loss 0.5 * hit"), out, { data: fixedData() });
    const [step] = logOf(out);
    expect(step.ps).toBeCloseTo(step.pm, 6);
    expect(summary.logged).toEqual({ ps: "mean over the batch" });
    expect(step.total_loss).toBeCloseTo(step.loss + 0.5 * step.hit, 5);
  });

  it("spec names that are JavaScript's own (__proto__, constructor) are values like any other: logged, and NaN-checked", async () => {
    const out = fresh();
    await run(oneEpoch("param __proto__ = 0.5\n constructor = __proto__ * 2"), out, { data: fixedData() });
    expect(logOf(out)[0].constructor).toBe(1);
    const nan = run(oneEpoch("__proto__ = log(step - 100)"), fresh(), { data: fixedData() });
    await expect(nan).rejects.toThrow(/non-finite value of `__proto__` \(spec line 13\) at step 0/);
  });
});

describe("a checkpoint becomes current only when whole and finite, and the log agrees with it", () => {
  it("weights made non-finite by an epoch's last step stop the run; no checkpoint of them is kept", async () => {
    // The step's loss and values are finite; the update at step 3, the epoch's last, is infinite.
    const out = fresh();
    const broken = run(oneEpoch("scale grad(head) by if step == 3 then exp(1000) else 1").replace("batch 16", "batch 4"), out, { data: fixedData() });
    await expect(broken).rejects.toThrow(/^parameter head\.(kernel|bias) became non-finite in epoch 0; no checkpoint was written/);
    expect(existsSync(join(out, "summary.json"))).toBe(false);
    expect(await loadCheckpoint(join(out, "checkpoints"))).toBeUndefined();
  });

  it("a non-finite stop in the first epoch keeps the steps before it in the log, and says no checkpoint exists", async () => {
    const out = fresh();
    await expect(run(oneEpoch("bad = log(3 - step)").replace("batch 16", "batch 4"), out, { data: fixedData() })).rejects.toThrow(
      /non-finite value of `bad` \(spec line 13\) at step 3, epoch 0; no checkpoint was written/,
    );
    expect(logOf(out).map((l) => l.step)).toEqual([0, 1, 2, 3]);
  });

  it("after a kill between the log and the checkpoint, and a torn last line, --resume leaves one record per step and epoch", async () => {
    const out = fresh();
    const spec = smallSpec();
    await run(spec, out, { epochs: 1 });
    const whole = logOf(out);
    // What a run killed in epoch 1 leaves: that epoch's lines logged, its checkpoint not written, a torn line.
    appendFileSync(join(out, "log.jsonl"), whole.filter((l) => l.type === "step").map((l) => JSON.stringify({ ...l, epoch: 1 })).join("\n") + '\n{"type":"st');
    await run(spec, out, { epochs: 2, resume: true });
    const lines = logOf(out);
    expect(lines.filter((l) => l.type === "epoch").map((l) => l.epoch)).toEqual([0, 1]);
    const steps = lines.filter((l) => l.type === "step").map((l) => l.step);
    expect(steps).toEqual([...Array(steps.length).keys()]);
  });
});

describe("a run folder never mixes two runs", () => {
  it("two trainers written into one folder in quick succession are each loaded, not the first twice", async () => {
    // The module URL carried a millisecond time stamp: the second import returned the first trainer.
    const out = fresh();
    const first = await loadTrainer(await compileOrThrow(smallSpec("x = 1")), out);
    const second = await loadTrainer(await compileOrThrow(smallSpec("x = 2\n x2 = 3")), out);
    const lines = (t: typeof first) => Object.keys("stages" in t ? {} : t.valueLines);
    expect(lines(first)).toEqual(["x"]);
    expect(lines(second)).toEqual(["x", "x2"]);
  });

  it("--resume refuses a checkpoint that another spec, seed, --set or data made, naming what changed", async () => {
    const out = fresh();
    const spec = smallSpec("param alpha = 0.5\n scale grad(encoder[m]) by alpha");
    await run(spec, out, { epochs: 1 });
    const refused = (spec2: string, options: Partial<TrainOptions>) => run(spec2, out, { epochs: 2, resume: true, ...options });
    await expect(refused(spec.replace("hidden: [10]", "hidden: [12]"), {})).rejects.toThrow(/^cannot resume .*: the spec changed: encoders; start a new run/);
    await expect(refused(spec, { seed: 3 })).rejects.toThrow(/the seed changed: 2 → 3/);
    await expect(refused(spec, { set: { alpha: 0.7 } })).rejects.toThrow(/params changed: alpha 0\.5 → 0\.7/);
    await expect(refused(spec, { data: fixedData() })).rejects.toThrow(/the data changed: .* → given: fixed test data/);
    await expect(refused(spec.replace("scale grad(encoder[m]) by alpha", "scale grad(encoder[m]) by 2 * alpha"), {})).rejects.toBeInstanceOf(ResumeError);
    // The same run continues.
    expect((await refused(spec, {})).epochs).toBe(2);
  });

  it("a fresh run refuses a folder holding another run, unless told to overwrite it", async () => {
    const out = fresh();
    await run(smallSpec(), out, { epochs: 1 });
    await expect(run(oneEpoch("x = acc(out, y)"), out)).rejects.toThrow(/holds another run \(log\.jsonl, summary\.json, checkpoints, best\); choose another --out, add --resume to continue that run, or --overwrite to replace it/);
    await run(oneEpoch("x = acc(out, y)"), out, { overwrite: true });
    expect(logOf(out).every((l) => l.type === "epoch" || l.x !== undefined)).toBe(true);
  });

  it("a second process on the same folder gets a clear error; a lock whose process died is taken over", async () => {
    const out = fresh();
    const held = await claimRunFolder(out, {});
    await expect(run(smallSpec(), out, { epochs: 1 })).rejects.toThrow(new RegExp(`is in use by another mmb train \\(process ${process.pid}\\)`));
    await held.release();
    writeFileSync(join(out, ".mmb-lock"), "999999");
    expect((await run(smallSpec(), out, { epochs: 1 })).epochs).toBe(1);
    await expect(claimRunFolder(out, {})).rejects.toBeInstanceOf(RunFolderError);
  });
});



describe("the memory a run needs counts its data", () => {
  it("data larger than the machine stops the run before the model is allocated, naming its size", async () => {
    // A stand-in for 10 TB of samples: the check reads each array's size only.
    const huge = { byteLength: 1e13 } as unknown as Float32Array;
    const split = { inputs: [huge, new Float32Array(0)], labels: new Float32Array(0), size: 1 };
    const data = { train: split, valid: split, test: split, description: "10 TB of samples" };
    await expect(run(smallSpec(), fresh(), { data })).rejects.toThrow(/^training small needs about [\d.]+ GiB: 27939\.7 GiB of data and [\d.]+ GiB for .* more than the [\d.]+ GiB this machine can give; use fewer samples or smaller inputs$/);
  });
});

describe("mmb report reads what a damaged log still holds", () => {
  it("a torn or edited line is skipped with a warning naming it; the other records are drawn", async () => {
    const out = fresh();
    await run(oneEpoch("x = acc(out, y)"), out, { data: fixedData() });
    const lines = readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n");
    writeFileSync(join(out, "log.jsonl"), [lines[0], '{"type":"step","ep', ...lines.slice(1), "[1, 2]"].join("\n") + "\n");
    const warnings: string[] = [];
    const { charts } = await runCharts(out, "run", (w) => warnings.push(w));
    expect(warnings).toEqual([`${join(out, "log.jsonl")}:2: not valid JSON (a torn or edited line); skipped`, `${join(out, "log.jsonl")}:${lines.length + 2}: not a step or epoch record; skipped`]);
    expect(charts.find((c) => c.id === "run-loss")!.datasets[0]!.data).toHaveLength(1);
  });
});
