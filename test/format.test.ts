import { existsSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { corpus, layoutProblem, mutate, randomStatement } from "../bench/fuzz.js";
import { parse } from "../grammar/index.js";
import { formatSpec } from "../grammar/print.js";
import { mmbLexer } from "../grammar/tokens.js";
import { Random } from "../runtime/random.js";
import { fixturesDir, mmb, mmbWithInput, readSpec, smallSpec, specFiles, specsDir } from "./helpers.js";

function formatted(text: string): string {
  const result = formatSpec(text);
  if ("diagnostics" in result) throw new Error(result.diagnostics.map((d) => `${d.code} ${d.message}`).join("\n"));
  return result.text;
}

/** The inputs whose layout breaks, each with its input, for a readable failure. */
function broken(inputs: string[]): string[] {
  return inputs.flatMap((text) => {
    const problem = layoutProblem(text);
    return problem ? [`${problem}\n=== input ===\n${text}`] : [];
  });
}

const parsesClean = (text: string) => parse(text).diagnostics.length === 0;

describe("mmb fmt: the canonical layout", () => {
  it("lays out every declaration and statement, comments in every place, blank lines and aligned runs", () => {
    const messy = `# the header comment

model   messy   # the model's name, trailing whitespace trimmed${"  \t"}


data synthetic( classes : 6,dominant:audio )
modality audio:float[64]
modality visual : float[3,16,16] from "frames.npz:visual"
target y:class(6) from "meta.csv:emotion"
encoder audio=mlp(hidden:[128],out:64)
encoder visual = conv2d(channels: [8, 16],   # inside an item: moved to its end
                        out: 64)  # and one after it: on a line of its own
encoder[m] = mlp(hidden: [4], out: 4)
head[m]=linear(6)
learnable w[m]=1
learnable boost = 1
fusion ( concat ) -> linear( 6 )
loss cross_entropy(out,y) + ((a - b) - c)
loss[m] cross_entropy(alone[m], y)
optimizer sgd(lr:1e-4)
schedule constant
train epochs 20   batch 64 seed (1 + 1) clip -(x ^ 2)
predict sum(k, alone[k])
balance {   # after the brace
  param alpha=0.5
  param modulation_end = 50
  // a comment line breaks the run
  s[m] = sum(batch, prob(contrib[m], y))
  rho[m]   = s[m] / s[other(m)]
  when epoch < modulation_end {
    scale grad(encoder[m]) by rho[m]
    noise grad(encoder[m]) ~ normal(0, 1)

    replace grad(head) by grad(head)   # trailing
  }  # after the closing brace
  drop z[m] with 0.5 rescaled
  drop z[m] with 0.5
  set w[m] = 1
  set weights(head) = fresh(head)
  add loss 0.1 * sum(k, x[k])
  minimize x wrt w using sgd(lr: 0.1)
  # dangling at the end of the block


}
every epoch {

  p = epoch
}
stage joint {
}
stage probe { train epochs 10
  freeze encoder[m], head
  balance { x = 1 }
}
`;
    expect(formatted(messy)).toBe(`# the header comment

model messy # the model's name, trailing whitespace trimmed

data synthetic(classes: 6, dominant: audio)
modality audio  : float[64]
modality visual : float[3, 16, 16] from "frames.npz:visual"
target   y      : class(6)         from "meta.csv:emotion"
encoder audio  = mlp(hidden: [128], out: 64)
encoder visual = conv2d(channels: [8, 16], out: 64) # inside an item: moved to its end
# and one after it: on a line of its own
encoder[m] = mlp(hidden: [4], out: 4)
head[m] = linear(6)
learnable w[m]  = 1
learnable boost = 1
fusion concat -> linear(6)
loss cross_entropy(out, y) + (a - b - c)
loss[m] cross_entropy(alone[m], y)
optimizer sgd(lr: 1e-4)
schedule constant
train epochs 20 batch 64 seed (1 + 1) clip -(x ^ 2)
predict sum(k, alone[k])
balance { # after the brace
  param alpha          = 0.5
  param modulation_end = 50
  // a comment line breaks the run
  s[m]   = sum(batch, prob(contrib[m], y))
  rho[m] = s[m] / s[other(m)]
  when epoch < modulation_end {
    scale grad(encoder[m]) by rho[m]
    noise grad(encoder[m]) ~ normal(0, 1)

    replace grad(head) by grad(head) # trailing
  } # after the closing brace
  drop z[m] with 0.5 rescaled
  drop z[m] with 0.5
  set w[m]          = 1
  set weights(head) = fresh(head)
  add loss 0.1 * sum(k, x[k])
  minimize x wrt w using sgd(lr: 0.1)
  # dangling at the end of the block
}
every epoch {
  p = epoch
}
stage joint {
}
stage probe {
  train epochs 10
  freeze encoder[m], head
  balance {
    x = 1
  }
}
`);
    expect(layoutProblem(messy)).toBeUndefined();
  });

  it.each([
    ["a - (b - c)", "a - (b - c)"],
    ["(a - b) - c", "a - b - c"],
    ["(a * b) + c", "a * b + c"],
    ["a * (b + c)", "a * (b + c)"],
    ["2 ^ 3 ^ 2", "2 ^ 3 ^ 2"],
    ["2 ^ (3 ^ 2)", "2 ^ 3 ^ 2"],
    ["(2 ^ 3) ^ 2", "(2 ^ 3) ^ 2"],
    ["(a < b) < c", "a < b < c"],
    ["a < (b < c)", "a < (b < c)"],
    ["a or (b and c)", "a or b and c"],
    ["(a or b) and c", "(a or b) and c"],
    ["-(x ^ 2)", "-x ^ 2"],
    ["(-x) ^ 2", "(-x) ^ 2"],
    ["(-x) * 2", "-x * 2"],
    ["-(x * 2)", "-(x * 2)"],
    ["-(-x)", "- -x"],
    ["a - (-b)", "a - -b"],
    ["not (a and b)", "not (a and b)"],
    ["(not a) and b", "not a and b"],
    ["not (a < b)", "not a < b"],
    ["(not a) < b", "(not a) < b"],
    ["a ^ (not b) + c", "a ^ (not b) + c"],
    ["(if a then b else c) + 1", "(if a then b else c) + 1"],
    ["1 + if a then b else c", "1 + (if a then b else c)"],
    ["-(if a then b else c)", "-(if a then b else c)"],
    ["if a then b else (if c then d else e)", "if a then b else if c then d else e"],
    ["if (a and b) then (c + d) else (e)", "if a and b then c + d else e"],
    ["f((a + b), (c))", "f(a + b, c)"],
    ["(a + b)[m]", "(a + b)[m]"],
    ["(-x).y", "(-x).y"],
    ["(x)[m].y(1)", "x[m].y(1)"],
    ["(1).x", "(1).x"],
    ["(1.5).x", "1.5.x"],
    ["[ (a), b + c ]", "[a, b + c]"],
    ["1e-4+.5", "1e-4 + .5"],
    ['"a\\"b"+1', '"a\\"b" + 1'],
  ])("%s is printed %s: parentheses only where the operators' binding needs them", (source, expected) => {
    const spec = `balance {\n  x = ${source}\n}\n`;
    expect(formatted(spec)).toBe(`balance {\n  x = ${expected}\n}\n`);
    expect(layoutProblem(spec)).toBeUndefined();
  });

  it("blank lines: one where there were several, none at a file's or a block's start or end; \\n line ends, one at the end", () => {
    expect(formatted("")).toBe("");
    expect(formatted("\n\n  \n")).toBe("");
    expect(formatted("\uFEFF\r\n\r\nmodel m\r\n\r\n\r\n# c\r\nbalance {\r\n\r\n  x = 1\r\n\r\n}\r\n\r\n")).toBe("model m\n\n# c\nbalance {\n  x = 1\n}\n");
    expect(formatted("# only a comment   ")).toBe("# only a comment\n");
  });

  it("refuses a spec with syntax errors, with the parser's diagnostics; formats one whose only errors are the checker's", () => {
    const refused = formatSpec("model m\nbalance {\n  x = \n}\n");
    expect("diagnostics" in refused && refused.diagnostics.map((d) => d.code)).toEqual(["MMB002"]);
    // A chain of `if`s deeper than the parser's stack is a diagnostic too, never a crash.
    const deep = formatSpec(`balance {\n  x = ${"if a then 1 else ".repeat(5000)}0\n}\n`);
    expect("diagnostics" in deep && deep.diagnostics.map((d) => d.code)).toEqual(["MMB032"]);
    expect(formatted(readFileSync(join(fixturesDir, "cyclic-definition", "input.mmb"), "utf8"))).toContain("balance {\n  a = b + 1\n  b = a * 2\n}\n");
  });
});

describe("mmb fmt keeps what a spec says (idempotent; the same AST; every comment, in order)", () => {
  it("every shipped spec is already formatted", () => {
    const unformatted = specFiles().filter((file) => formatted(readSpec(file)) !== readSpec(file));
    expect(unformatted).toEqual([]);
    expect(broken(specFiles().map(readSpec))).toEqual([]);
  });

  it("every fixture that parses (its input is not reformatted: its diagnostics' spans are golden)", () => {
    const inputs = readdirSync(fixturesDir)
      .map((name) => join(fixturesDir, name, "input.mmb"))
      .filter(existsSync)
      .map((path) => readFileSync(path, "utf8"))
      .filter(parsesClean);
    expect(inputs.length).toBeGreaterThan(30);
    expect(broken(inputs)).toEqual([]);
  });

  it("a comment after every token, on its line or on lines of its own, in every spec and fixture", () => {
    const inputs = corpus().filter(parsesClean);
    const commented = inputs.flatMap((text) => {
      const ends = mmbLexer.tokenize(text).tokens.map((t) => t.endOffset! + 1);
      return [" # after it\n", "\n  // on its own line\n\n", "#\n"].map((comment, variant) => {
        // Every token in the last variant; every few in the others, so that items keep their neighbours.
        const chosen = ends.filter((_, i) => variant === 2 || i % (3 + variant) === 0).reverse();
        return chosen.reduce((t, at) => t.slice(0, at) + comment + t.slice(at), text);
      });
    });
    expect(broken(commented)).toEqual([]);
  });

  it("the fuzzer's surviving inputs: 3,000 mutants that still parse (a fixed seed), and random statements", () => {
    const random = new Random(11);
    const inputs = corpus();
    const survivors: string[] = [];
    while (survivors.length < 3000) {
      let text = inputs[Math.floor(random.uniform() * inputs.length)]!;
      const rounds = 1 + Math.floor(random.uniform() * 4);
      for (let r = 0; r < rounds; r++) text = mutate(text, random);
      if (parsesClean(text)) survivors.push(text);
    }
    const statements = Array.from({ length: 500 }, () => smallSpec(`  ${randomStatement(random)}\n  ${randomStatement(random)}`)).filter(parsesClean);
    expect(statements.length).toBeGreaterThan(400);
    expect(broken([...survivors, ...statements])).toEqual([]);
  }, 120_000);
});

describe("mmb fmt on the command line", () => {
  const dir = mkdtempSync(join(tmpdir(), "mmb-fmt-"));
  const messy = "model m\nbalance {\n  param a = 1\n  param long_name = 2\n}\n";
  const tidy = "model m\nbalance {\n  param a         = 1\n  param long_name = 2\n}\n";

  it("rewrites the specs that change, in place, and prints their names; --check writes nothing and exits 1 if any is not formatted", () => {
    const [changes, stays] = [join(dir, "changes.mmb"), join(dir, "stays.mmb")];
    writeFileSync(changes, messy);
    writeFileSync(stays, tidy);
    const checked = mmb("fmt", "--check", changes, stays);
    expect(checked.status).toBe(1);
    expect(checked.stdout).toBe(`${changes}\n`);
    expect(checked.stderr).toContain("1 spec is not formatted");
    expect(readFileSync(changes, "utf8")).toBe(messy);
    const rewritten = mmb("fmt", changes, stays);
    expect(rewritten.status).toBe(0);
    expect(rewritten.stdout).toBe(`${changes}\n`);
    expect(readFileSync(changes, "utf8")).toBe(tidy);
    expect(mmb("fmt", "--check", changes, stays)).toMatchObject({ status: 0, stdout: "" });
  });

  it("a spec behind a symbolic link is rewritten where it lies, the link kept", () => {
    const target = join(dir, "target.mmb");
    const link = join(dir, "link.mmb");
    writeFileSync(target, messy);
    symlinkSync(target, link);
    expect(mmb("fmt", link).status).toBe(0);
    expect(readFileSync(target, "utf8")).toBe(tidy);
  });

  it("a spec with syntax errors: its rendered errors, exit 1, the file untouched; usage errors exit 2", () => {
    const bad = join(dir, "bad.mmb");
    writeFileSync(bad, "model m\nbalance {\n  x =\n}\n");
    for (const args of [["fmt", bad], ["fmt", "--check", bad]]) {
      const result = mmb(...args);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain("error[MMB002]");
      expect(result.stderr).toContain("bad.mmb:4:1");
    }
    expect(readFileSync(bad, "utf8")).toBe("model m\nbalance {\n  x =\n}\n");
    expect(mmb("fmt").status).toBe(2);
    expect(mmb("fmt", "-", bad).status).toBe(2);
    expect(mmb("fmt", "--format", "json", bad).status).toBe(2);
  });

  it("- formats standard input to standard output (for editors); with --check it is only judged", () => {
    expect(mmbWithInput(messy, "fmt", "-")).toMatchObject({ status: 0, stdout: tidy });
    expect(mmbWithInput(tidy, "fmt", "-")).toMatchObject({ status: 0, stdout: tidy });
    expect(mmbWithInput(messy, "fmt", "--check", "-")).toMatchObject({ status: 1, stdout: "<stdin>\n" });
  });

  it("mmb fmt --check specs/*.mmb exits 0", () => {
    const result = mmb("fmt", "--check", ...specFiles().map((file) => join(specsDir, file)));
    expect(result.stderr).toBe("");
    expect(result).toMatchObject({ status: 0, stdout: "" });
  });
});
