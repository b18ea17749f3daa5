import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findTorchPython } from "../cli/python.js";
import { torchRuntimeSource } from "../compiler/3-codegen/torch/runtime-source.js";
import { kmeansPurity } from "../runtime/clustering.js";
import { Random } from "../runtime/random.js";

/**
 * The torch runtime's `purity` against the tfjs runtime's on the same features: k-means with the
 * same seeded starts, the same scaling and the same purity. Features are clusters of varying
 * spread, so that some runs separate the classes well and some do not.
 */
const { python } = findTorchPython();

describe.skipIf(!python)("k-means purity in the torch runtime", () => {
  it("equals runtime/clustering.ts's on 24 feature sets, seeds and class counts", () => {
    const random = new Random(5);
    const cases = Array.from({ length: 24 }, (_, i) => {
      const classes = 2 + (i % 5);
      const samples = 40 + 13 * i;
      const dims = 1 + (i % 7);
      const labels = Array.from({ length: samples }, () => Math.floor(random.uniform() * classes));
      const spread = 0.2 + (i % 4) * 0.6;
      const features = Float32Array.from({ length: samples * dims }, (_, j) => labels[Math.floor(j / dims)]! * ((j % dims) + 1) * 0.5 + random.normal() * spread);
      const seed = 1000 + 17 * i;
      return { classes, samples, dims, labels, features: Array.from(features), seed, expected: kmeansPurity(features, samples, dims, labels, classes, seed) };
    });
    const dir = mkdtempSync(join(tmpdir(), "mmb-kmeans-"));
    writeFileSync(join(dir, "runtime.py"), torchRuntimeSource());
    writeFileSync(join(dir, "cases.json"), JSON.stringify(cases));
    const program = [
      "import json, sys, numpy as np",
      "ns = {}",
      "exec(compile(open(sys.argv[1]).read(), 'runtime', 'exec'), ns)",
      "cases = json.load(open(sys.argv[2]))",
      "print(json.dumps([ns['kmeans_purity'](np.array(c['features'], np.float32).reshape(c['samples'], c['dims']), np.array(c['labels']), c['classes'], c['seed']) for c in cases]))",
    ].join("\n");
    const run = spawnSync(python!.command, ["-c", program, join(dir, "runtime.py"), join(dir, "cases.json")], { encoding: "utf8" });
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout)).toEqual(cases.map((c) => c.expected));
  });
});
