import { describe, expect, it } from "vitest";
import { fuzz, mutate } from "../bench/fuzz.js";
import { Random } from "../runtime/random.js";

describe("front-end fuzzing (a fixed seed; bench/fuzz.ts runs 100,000 cases)", () => {
  it("3,000 mutated specs: the checker never throws, every diagnostic has a code, a span in the file and help", () => {
    const report = fuzz(3000, 7);
    expect(report.crashes.map((c) => c.error)).toEqual([]);
    expect(report.invalidDiagnostics.map((d) => d.problem)).toEqual([]);
    // The mutations reach most of the catalogue (MMB026 comes from the command line only).
    expect(Object.keys(report.codesHit).length).toBeGreaterThanOrEqual(20);
    // Some mutants still check; each of them compiled to TypeScript that parses.
    expect(report.clean).toBeGreaterThan(0);
    expect(report.compiled).toBe(report.clean);
  });

  it("mutation is deterministic from the seed", () => {
    const text = "model m\nbalance {\n  x = 1\n}\n";
    const a = Array.from({ length: 20 }, (_, i) => mutate(text, new Random(i)));
    const b = Array.from({ length: 20 }, (_, i) => mutate(text, new Random(i)));
    expect(a).toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(5);
  });
});
