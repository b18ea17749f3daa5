import { describe, expect, it } from "vitest";
import { fuzz, mutate } from "../bench/fuzz.js";
import { Random } from "../runtime/random.js";
import { analyze } from "../compiler/index.js";

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
    // ...and to a torch trainer.
    expect(report.torchCompiled).toBe(report.clean);
    // Mutants that still parse format to a layout of the same AST that formats to itself.
    expect(report.layoutBroken.map((b) => b.problem)).toEqual([]);
    expect(report.formatted).toBeGreaterThan(100);
    // The language server indexed and hovered every mutant without throwing (crashes above).
    expect(report.hovers).toBeGreaterThan(10_000);
  });

  it("inputs the 100,000-case fuzzer found crashing are checked without throwing", async () => {
    // An encoder whose options fail its check, then a gradient expression whose shapes are compared through it.
    const found = `model fixture
modality audio  : float[16]
modality visual : float[3, 8, 8]
target y : class(4)
encoder audio  = mlp(hidden: -1e-308 [16], out: 8)
encoder visual = conv2d(channels: [4], out: -0)
fusion concat -> linear(4)
loss cross_entropy(out, y)
optimizer sgd(lr: 0.01)
balance {
  r = norm(grad(encoder[audio]) / weights(head))
}
`;
    const { diagnostics } = analyze(found, { fileName: "found.mmb" });
    expect(diagnostics.length).toBeGreaterThan(0);
    expect(diagnostics.every((d) => /^MMB\d{3}$/.test(d.code))).toBe(true);
  });

  it("mutation is deterministic from the seed", () => {
    const text = "model m\nbalance {\n  x = 1\n}\n";
    const a = Array.from({ length: 20 }, (_, i) => mutate(text, new Random(i)));
    const b = Array.from({ length: 20 }, (_, i) => mutate(text, new Random(i)));
    expect(a).toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(5);
  });
});
