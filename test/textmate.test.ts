import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { IToken as LexerToken, TokenType } from "chevrotain";
import oniguruma from "vscode-oniguruma";
import textmate, { type IGrammar } from "vscode-textmate";
import { beforeAll, describe, expect, it } from "vitest";
import { builtins, values } from "../compiler/builtins/index.js";
import { dataSources, encoders, fusions, heads, optimizers, schedules, trainSettings } from "../compiler/components.js";
import * as T from "../grammar/tokens.js";
import { root, specsDir, updateGoldens } from "./helpers.js";

/**
 * The editor's TextMate grammar (editors/vscode/syntaxes), run by VS Code's own tokenizer: it
 * must scope every shipped spec, agree with the lexer on every token, and name exactly the
 * lexer's keywords, the catalogue's builtins and the components.
 */

const grammarPath = join(root, "editors", "vscode", "syntaxes", "mmb.tmLanguage.json");
let grammarText = readFileSync(grammarPath, "utf8");
const specs = readdirSync(specsDir).filter((f) => f.endsWith(".mmb")).sort();

let grammar: IGrammar;

beforeAll(async () => {
  const require = createRequire(import.meta.url);
  await oniguruma.loadWASM(readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")));
  const registry = new textmate.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns: string[]) => new oniguruma.OnigScanner(patterns),
      createOnigString: (text: string) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async (scopeName: string) => (scopeName === "source.mmb" ? textmate.parseRawGrammar(grammarText, grammarPath) : null),
  });
  const loaded = await registry.loadGrammar("source.mmb");
  if (!loaded) throw new Error("the grammar did not load");
  grammar = loaded;
});

interface Token {
  text: string;
  scopes: string[];
  /** Offsets in the whole source, end exclusive. */
  start: number;
  end: number;
  line: number;
  column: number;
}

/** The tokens VS Code would make: line by line, each line starting in the state the last one left. */
function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let stack = textmate.INITIAL;
  let offset = 0;
  source.split("\n").forEach((line, i) => {
    const result = grammar.tokenizeLine(line, stack);
    for (const t of result.tokens) {
      const end = Math.min(t.endIndex, line.length);
      tokens.push({ text: line.slice(t.startIndex, end), scopes: t.scopes, start: offset + t.startIndex, end: offset + end, line: i + 1, column: t.startIndex + 1 });
    }
    stack = result.ruleStack;
    offset += line.length + 1;
  });
  return tokens;
}

/** The scopes of the token that is exactly `text` (the first one): fails if `text` is split or merged. */
function scopesOf(source: string, text: string): string[] {
  const token = tokenize(source).find((t) => t.text === text);
  expect(token, `one token \`${text}\` in \`${source}\``).toBeDefined();
  return token!.scopes;
}

/** Whitespace as the lexer's WhiteSpace token has it. */
const blank = /^[ \t\r\n\uFEFF]*$/;
const where = (t: Token) => `${t.line}:${t.column} \`${t.text}\` ${t.scopes.join(" ")}`;

/** The words of a grammar rule whose match is one list, `\b(?:a|b|c)\b...`. */
function words(rule: string): string[] {
  const match = (JSON.parse(grammarText).repository[rule]?.match ?? "") as string;
  const list = /^\\b\(\?:([\w|]+)\)\\b/.exec(match);
  if (!list) throw new Error(`repository.${rule} is not a word list: ${match}`);
  return list[1]!.split("|").sort();
}

const sorted = (names: Iterable<string>) => [...names].sort();

describe("every shipped spec", () => {
  it("there are specs to read", () => {
    expect(specs.length).toBeGreaterThan(30);
  });

  it.each(specs)("%s: every character has a scope beyond source.mmb, none is invalid", (file) => {
    const tokens = tokenize(readFileSync(join(specsDir, file), "utf8"));
    expect(tokens.filter((t) => !blank.test(t.text) && t.scopes.length < 2).map(where)).toEqual([]);
    expect(tokens.filter((t) => t.scopes.some((s) => s.startsWith("invalid"))).map(where)).toEqual([]);
  });

  /**
   * What a lexer token's text may be scoped as. A keyword is a keyword, except where the parser
   * reads it as a word: an option name before `:` (`synthetic(noise: 1)`), a member after `.`
   * (`teachers.head`), and `head` as the heads' outputs.
   */
  function allowed(tokens: LexerToken[], i: number): RegExp {
    const token = tokens[i]!;
    const type = token.tokenType;
    const is = (...types: TokenType[]) => types.includes(type);
    if (is(T.NumberLiteral)) return /^constant\.numeric\./;
    if (is(T.StringLiteral)) return /^(string\.quoted\.double|punctuation\.definition\.string\.(begin|end)|constant\.character\.escape)\./;
    if (is(T.LParen, T.RParen, T.LBracket, T.RBracket, T.LBrace, T.RBrace, T.Comma, T.Colon, T.Dot)) return /^punctuation\./;
    if (type === T.Identifier) return /^(variable|entity\.name|support\.(function|class)|storage\.type|constant\.language)\./;
    if (T.keywords.includes(type)) {
      if (tokens[i + 1]?.tokenType === T.Colon) return /^variable\.parameter\.option\./;
      if (tokens[i - 1]?.tokenType === T.Dot) return /^variable\.other\.property\./;
      return token.image === "head" ? /^(keyword\.|variable\.language\.builtin\.)/ : /^keyword\./;
    }
    return /^keyword\.operator\./;
  }

  it.each(specs)("%s: the grammar splits and scopes every token as the lexer reads it, and the rest is comments", (file) => {
    const source = readFileSync(join(specsDir, file), "utf8");
    const lexed = T.mmbLexer.tokenize(source);
    expect(lexed.errors).toEqual([]);
    const tokens = tokenize(source).filter((t) => !blank.test(t.text));
    const covered = new Set<Token>();
    const disagreements: string[] = [];
    lexed.tokens.forEach((lexerToken, i) => {
      const start = lexerToken.startOffset;
      const end = lexerToken.endOffset! + 1;
      const scope = allowed(lexed.tokens, i);
      for (const t of tokens.filter((t) => t.start < end && t.end > start)) {
        covered.add(t);
        // Inside the lexer token, and scoped as its kind: the innermost scope decides the colour.
        if (t.start < start || t.end > end || !scope.test(t.scopes.at(-1)!)) disagreements.push(`${lexerToken.tokenType.name} \`${lexerToken.image}\` vs ${where(t)}`);
      }
    });
    const rest = tokens.filter((t) => !covered.has(t) && !t.scopes.some((s) => /^comment\.line\.(number-sign|double-slash)\.mmb$/.test(s)));
    expect(disagreements).toEqual([]);
    expect(rest.map(where)).toEqual([]);
  });
});

describe("the scopes of each kind of token", () => {
  it("keywords: declarations, control, statements and logic", () => {
    expect(scopesOf("model ogm", "model")).toContain("keyword.other.declaration.mmb");
    expect(scopesOf("balance {", "balance")).toContain("keyword.other.declaration.mmb");
    expect(scopesOf("when epoch < 5 {", "when")).toContain("keyword.control.mmb");
    expect(scopesOf("k[m] = if a then 1 else 0", "then")).toContain("keyword.control.mmb");
    expect(scopesOf("every epoch {", "every")).toContain("keyword.control.mmb");
    expect(scopesOf("stage warmup {", "stage")).toContain("keyword.control.mmb");
    expect(scopesOf("scale grad(encoder[m]) by 0.5", "by")).toContain("keyword.other.statement.mmb");
    expect(scopesOf("drop z[m] with 0.1 rescaled", "rescaled")).toContain("keyword.other.statement.mmb");
    expect(scopesOf("minimize e wrt w using sgd(lr: 0.1)", "wrt")).toContain("keyword.other.statement.mmb");
    expect(scopesOf("add loss 0.1 * e", "loss")).toContain("keyword.other.statement.mmb");
    expect(scopesOf("when a > 1 and not b {", "and")).toContain("keyword.operator.logical.mmb");
    expect(scopesOf("when a > 1 and not b {", "not")).toContain("keyword.operator.logical.mmb");
  });

  it("a word that starts with a keyword is a name: `models`, `data_dir`, `iffy`", () => {
    for (const word of ["models", "data_dir", "iffy"]) {
      const scopes = scopesOf(`x = ${word} + 1`, word);
      expect(scopes).toContain("variable.other.mmb");
      expect(scopes.join(" ")).not.toMatch(/keyword/);
    }
  });

  it("builtins: functions when called, values by name", () => {
    expect(scopesOf("scale grad(encoder[m]) by k[m]", "grad")).toContain("support.function.builtin.mmb");
    expect(scopesOf("g = norm(grad(encoder[m]))", "norm")).toContain("support.function.builtin.mmb");
    expect(scopesOf("s[m] = sum(batch, prob(contrib[m], y))", "contrib")).toContain("variable.language.builtin.mmb");
    expect(scopesOf("s[m] = sum(batch, prob(contrib[m], y))", "batch")).toContain("variable.language.builtin.mmb");
    // `loss` declares at the start of a line, even before `(`, and is the builtin metric inside an expression.
    expect(scopesOf("loss (1 - w) * cross_entropy(out, y)", "loss")).toContain("keyword.other.declaration.mmb");
    expect(scopesOf("l[m] = loss(head[m], y)", "loss")).toContain("support.function.builtin.mmb");
    // `head[m] = ...` declares the heads; `head[m]` elsewhere is their outputs.
    expect(scopesOf("head[m] = linear(6)", "head")).toContain("keyword.other.declaration.mmb");
    expect(scopesOf("l[m] = loss(head[m], y)", "head")).toContain("variable.language.builtin.mmb");
  });

  it("every builtin function of the catalogue is scoped as one when called", () => {
    const missed = builtins.map((b) => b.name).filter((name) => !scopesOf(`x = ${name}(y)`, name).includes("support.function.builtin.mmb"));
    expect(missed).toEqual([]);
  });

  it("components where a component stands; the same word elsewhere is what it is there", () => {
    expect(scopesOf("encoder audio = mlp(hidden: [128], out: 64)", "mlp")).toContain("support.class.encoder.mmb");
    expect(scopesOf("encoder[m] = conv2d(channels: [8])", "conv2d")).toContain("support.class.encoder.mmb");
    expect(scopesOf("fusion sum -> linear(6)", "sum")).toContain("support.class.fusion.mmb");
    expect(scopesOf("fusion sum -> linear(6)", "linear")).toContain("support.class.head.mmb");
    expect(scopesOf("fusion (concat(j, w[j] * z[j]) + attention) / 2 -> linear(6)", "concat")).toContain("support.function.builtin.mmb");
    expect(scopesOf("fusion (concat(j, w[j] * z[j]) + attention) / 2 -> linear(6)", "attention")).toContain("support.class.fusion.mmb");
    expect(scopesOf("optimizer adamw(lr: 1e-3)", "adamw")).toContain("support.class.optimizer.mmb");
    expect(scopesOf("minimize e wrt w using sgd(lr: 0.1)", "sgd")).toContain("support.class.optimizer.mmb");
    expect(scopesOf("schedule step(every: 70, gamma: 0.1)", "step")).toContain("support.class.schedule.mmb");
    expect(scopesOf("when step > 10 {", "step")).toContain("variable.language.builtin.mmb");
    expect(scopesOf("data synthetic(classes: 6)", "synthetic")).toContain("support.class.data.mmb");
    expect(scopesOf("train epochs 20 batch 64", "batch")).toContain("variable.parameter.setting.mmb");
    expect(scopesOf("T[m] = over(train, nll(contrib[m], y))", "train")).toContain("keyword.other.declaration.mmb");
    expect(scopesOf("modality audio : float[64]", "float")).toContain("storage.type.mmb");
    expect(scopesOf("target y : class(6)", "class")).toContain("storage.type.mmb");
  });

  it("option names before `:`, keywords included", () => {
    expect(scopesOf("optimizer sgd(lr: 0.01, momentum: 0.9)", "lr")).toContain("variable.parameter.option.mmb");
    expect(scopesOf("data synthetic(noise: 1.5)", "noise")).toContain("variable.parameter.option.mmb");
    expect(scopesOf("fusion film(by: audio) -> linear(6)", "by")).toContain("variable.parameter.option.mmb");
  });

  it("declared names", () => {
    expect(scopesOf("model ogm_ge", "ogm_ge")).toContain("entity.name.type.model.mmb");
    expect(scopesOf("modality audio  : float[64]", "audio")).toContain("entity.name.type.modality.mmb");
    expect(scopesOf("target y : class(6)", "y")).toContain("entity.name.type.target.mmb");
    expect(scopesOf("encoder visual = conv2d()", "visual")).toContain("entity.name.type.modality.mmb");
    expect(scopesOf("stage teachers {", "teachers")).toContain("entity.name.namespace.stage.mmb");
    expect(scopesOf("param alpha = 0.8", "alpha")).toContain("variable.other.definition.mmb");
    expect(scopesOf("learnable w[m] = 1", "w")).toContain("variable.other.definition.mmb");
    expect(scopesOf("  rho[m] = s[m] / s[other(m)]", "rho")).toContain("variable.other.definition.mmb");
    expect(scopesOf("when rho == 1 {", "rho")).toContain("variable.other.mmb");
    expect(scopesOf("set w[m] = 2", "w")).toContain("variable.other.mmb");
  });

  it("comments: `#` and `//` to the end of the line, not inside a string", () => {
    expect(scopesOf("# OGM-GE: Σ_u ‖g‖", " OGM-GE: Σ_u ‖g‖")).toContain("comment.line.number-sign.mmb");
    expect(scopesOf("k = 1 // a note", " a note")).toContain("comment.line.double-slash.mmb");
    expect(scopesOf("k = a / b", "/")).toContain("keyword.operator.arithmetic.mmb");
    const inString = tokenize('modality a : float[1] from "x#1.npy"');
    expect(inString.filter((t) => t.scopes.some((s) => s.startsWith("comment")))).toEqual([]);
  });

  it("numbers as the lexer reads them: one token each", () => {
    for (const n of ["1e-4", ".5", "0.01", "2.5E+3", "1.", "64"]) expect(scopesOf(`x = ${n} * 2`, n)).toContain("constant.numeric.mmb");
  });

  it("a string with an escaped quote stays one string, and ends at its closing quote", () => {
    const tokens = tokenize('target y : class(["a \\" b", "c"]) from "y.csv"');
    const strings = tokens.filter((t) => t.scopes.includes("string.quoted.double.mmb")).map((t) => t.text).join("");
    expect(strings).toBe('"a \\" b""c""y.csv"');
    expect(scopesOf('x = "a \\" b"', '\\"')).toContain("constant.character.escape.mmb");
    expect(scopesOf('target y : class(["a \\" b", "c"]) from "y.csv"', "from")).toContain("keyword.other.declaration.mmb");
  });

  it("operators and punctuation", () => {
    expect(scopesOf("fusion concat -> linear(6)", "->")).toContain("keyword.operator.arrow.mmb");
    expect(scopesOf("noise grad(encoder[m]) ~ normal(0, 0.1)", "~")).toContain("keyword.operator.distributed.mmb");
    expect(scopesOf("when a != b {", "!=")).toContain("keyword.operator.comparison.mmb");
    expect(scopesOf("when a <= b {", "<=")).toContain("keyword.operator.comparison.mmb");
    expect(scopesOf("k = a ^ 2", "^")).toContain("keyword.operator.arithmetic.mmb");
    expect(scopesOf("k = -a", "-")).toContain("keyword.operator.arithmetic.mmb");
    expect(scopesOf("scale grad(encoder[m].last) by 2", ".")).toContain("punctuation.accessor.mmb");
    expect(scopesOf("scale grad(encoder[m].last) by 2", "last")).toContain("variable.other.property.mmb");
    expect(scopesOf("balance {", "{")).toContain("punctuation.section.braces.begin.mmb");
  });

  it("characters the lexer rejects are invalid, and so is an unclosed string", () => {
    expect(scopesOf("k = a @ b", "@")).toContain("invalid.illegal.character.mmb");
    expect(scopesOf("k = !a", "!")).toContain("invalid.illegal.character.mmb");
    expect(scopesOf("k = é", "é")).toContain("invalid.illegal.character.mmb");
    expect(scopesOf('x = "open + 1', '"open + 1')).toContain("invalid.illegal.unclosed-string.mmb");
  });
});

describe("the grammar's word lists are the compiler's", () => {
  it("keywords: the lexer's, `head` aside (a keyword only in `head[m] = ...`, head-declaration)", () => {
    const lexer = T.keywords.map((k) => (k.PATTERN as RegExp).source);
    const grammarKeywords = ["keywords-declaration", "keywords-control", "keywords-statement", "keywords-logical"].flatMap(words);
    expect(sorted([...grammarKeywords, "head"])).toEqual(sorted(lexer));
    expect(new Set(grammarKeywords).size).toBe(grammarKeywords.length);
  });

  /** The word lists the compiler's tables give; `UPDATE_GOLDEN=1 npm test` writes them into the grammar, as it writes the README's tables. */
  const generated: Record<string, string[]> = {
    "builtin-functions": builtins.map((b) => b.name),
    "builtin-values": values.map((v) => v.name),
    "encoder-names": Object.keys(encoders),
    "fusion-names": Object.keys(fusions),
    "head-names": Object.keys(heads),
    "optimizer-names": Object.keys(optimizers),
    "schedule-names": Object.keys(schedules),
    "data-names": Object.keys(dataSources),
    "train-settings": Object.keys(trainSettings),
  };

  it("builtins (compiler/builtins), components and training settings (compiler/components.ts): generated from the compiler's tables", () => {
    if (updateGoldens) {
      const grammar = JSON.parse(readFileSync(grammarPath, "utf8"));
      for (const [rule, names] of Object.entries(generated)) {
        grammar.repository[rule].match = grammar.repository[rule].match.replace(/^\\b\(\?:[\w|]+\)\\b/, `\\b(?:${names.join("|")})\\b`);
      }
      writeFileSync(grammarPath, JSON.stringify(grammar, null, 2) + "\n");
      grammarText = readFileSync(grammarPath, "utf8");
    }
    for (const [rule, names] of Object.entries(generated)) expect(words(rule), rule).toEqual(sorted(names));
  });
});
