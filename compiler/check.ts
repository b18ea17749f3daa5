import type { Arg, Decl, Expr, Program, Span, Stmt } from "../grammar/ast.js";
import { error, nearest, SourceText, type Diagnostic } from "./diagnostics.js";
import type { ActionIR, Component, EncoderPart, FExpr, FusionIR, GroupRef, IndexRef, LearnableIR, ModalityIR, ModelIR, RExpr, RNode, RuleValue, ValueKind } from "./ir.js";
import * as library from "./library.js";
import { readsTaskGradient } from "./schedule.js";
import type { ComponentSpec, OptionSpec, OptionValue } from "./library.js";

/**
 * Phase 2: AST → IR and diagnostics. Reports every independent error and never throws;
 * an expression with an error yields `undefined`, so that one mistake is reported once.
 */
export function check(program: Program, source: SourceText): { model?: ModelIR; diagnostics: Diagnostic[] } {
  const checker = new Checker(source);
  const model = checker.run(program);
  return { ...(model ? { model } : {}), diagnostics: checker.diagnostics };
}

const unaryMath = ["abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "sign", "square"];
const modalityReductions = ["sum", "mean", "max", "min"];
const metricFns = ["acc", "prob", "loss", "mae", "cross_entropy", "l1", "mse", "dice", "dice_loss"] as const;
const gradStats = ["norm", "norm1", "std"] as const;
const builtinFunctions = [
  ...unaryMath, ...modalityReductions, ...metricFns, ...gradStats,
  "grad", "cos", "dot", "prev", "delta", "ema", "detach", "per_sample", "class_mean", "distance", "normal", "other", "lr", "concat",
];
const reservedValues = ["step", "epoch", "out", "z", "contrib", "head", "batch", "alone", "without"];
/** Per-modality head outputs a rule can score, by spec name. */
const perModalityOutputs = ["contrib", "head", "alone", "without"];
const encoderParts = ["last", "conv", "dense", "rnn", "attention", "norm"] as const;
/** The layer kinds each encoder has, for `encoder[m].<kind>` (see runtime/model.ts for the names). */
const layerKinds: Record<string, EncoderPart[]> = {
  mlp: ["last", "dense"],
  conv1d: ["last", "conv"],
  conv2d: ["last", "conv"],
  lstm: ["last", "rnn"],
  gru: ["last", "rnn"],
  transformer: ["last", "dense", "attention", "norm"],
  resnet: ["last", "conv"],
};
/** Elementwise functions a fusion expression may apply to features. */
const fusionFunctions = ["sigmoid", "tanh", "relu", "exp", "abs"];

interface Env {
  /** Index variables in scope (`m` in `x[m] = ...`, `k` in `sum(k, ...)`). */
  bound: Set<string>;
  /** In actions, unbound index variables become loops over the modalities. */
  loops?: Set<string>;
  /** Names of rule values this expression reads, for cycle detection. */
  reads?: Map<string, Span>;
  underHistory?: boolean;
}

interface Definition {
  name: string;
  perModality: boolean;
  stmt: Extract<Stmt, { kind: "Define" }>;
  checked?: RExpr | undefined;
  state?: "checking" | "done";
  reads: Map<string, Span>;
}

class Checker {
  readonly diagnostics: Diagnostic[] = [];
  private modalities: ModalityIR[] = [];
  private modalitySpans = new Map<string, Span>();
  private targetName = "";
  private params = new Map<string, { value: number; span: Span }>();
  private definitions = new Map<string, Definition>();
  private learnables = new Map<string, LearnableIR & { span: Span }>();
  private encoders: Component[] = [];
  private fusion?: Component;
  private fuse?: FusionIR;
  private head?: Component;
  private auxHead?: Component;
  private historyCount = 0;
  private targetKind: "class" | "real" | "mask" = "class";
  /** Groups with their own `minimize` objective, for MMB022. */
  private minimized = new Map<string, Span>();

  constructor(private readonly source: SourceText) {}

  private report(diagnostic: Diagnostic): undefined {
    this.diagnostics.push(diagnostic);
    return undefined;
  }

  private line(span: Span): number {
    return this.source.position(span.start).line;
  }

  private text(span: Span): string {
    return this.source.text.slice(span.start, span.end);
  }

  run(program: Program): ModelIR | undefined {
    const singles = new Map<Decl["kind"], Decl>();
    const single = <K extends Decl["kind"]>(kind: K) => singles.get(kind) as Extract<Decl, { kind: K }> | undefined;
    const balance: Stmt[] = [];
    for (const decl of program.decls) {
      if (decl.kind === "BalanceBlock") {
        balance.push(...decl.body);
        continue;
      }
      if (["ModalityDecl", "EncoderDecl", "LearnableDecl", "HeadDecl"].includes(decl.kind)) continue;
      const previous = singles.get(decl.kind);
      if (previous) {
        const keyword = this.text(decl.span).split(/\s/)[0];
        this.report(error("MMB003", `\`${keyword}\` is declared twice`, decl.span, {
          label: "second declaration",
          related: [{ span: previous.span, message: "first declared here" }],
          help: `keep one \`${keyword}\` declaration`,
        }));
      } else singles.set(decl.kind, decl);
    }

    this.collectModalities(program.decls);
    const target = this.checkTarget(single("TargetDecl"));
    this.checkEncoders(program.decls);
    this.collectLearnables(program.decls);
    this.checkFusion(single("FusionDecl"), target?.classes);
    this.checkAuxHeads(program.decls, target?.classes);
    const data = this.checkData(single("DataDecl"), target);
    const optimizer = this.checkOptimizer(single("OptimizerDecl"));
    const schedule = single("ScheduleDecl") ? this.component(single("ScheduleDecl")!.value, library.schedules, "schedule") : { kind: "constant", options: {}, line: 1 };
    const train = this.checkTrain(single("TrainDecl"));
    const loss = this.checkLoss(single("LossDecl"));
    const rule = this.checkBalance(balance);

    const modelDecl = single("ModelDecl");
    if (this.diagnostics.length > 0 || !target || !this.fusion || !this.head || !loss || !optimizer || !schedule || !data) return undefined;
    return {
      name: modelDecl?.name.name ?? "model",
      data,
      modalities: this.modalities,
      target,
      encoders: this.encoders,
      fusion: this.fusion,
      ...(this.fuse ? { fuse: this.fuse } : {}),
      head: this.head,
      ...(this.auxHead ? { auxHead: this.auxHead } : {}),
      learnables: [...this.learnables.values()].map(({ span: _span, ...l }) => l),
      loss,
      optimizer,
      schedule,
      train,
      rule,
    };
  }

  // ---------------------------------------------------------------- architecture

  private collectModalities(decls: Decl[]): void {
    for (const decl of decls) {
      if (decl.kind !== "ModalityDecl") continue;
      const name = decl.name.name;
      const previous = this.modalitySpans.get(name);
      if (previous) {
        this.report(error("MMB003", `modality \`${name}\` is declared twice`, decl.name.span, {
          label: "second declaration",
          related: [{ span: previous, message: "first declared here" }],
          help: "give each modality its own name",
        }));
        continue;
      }
      if (reservedValues.includes(name) || builtinFunctions.includes(name)) {
        this.report(error("MMB020", `\`${name}\` is a built-in name and cannot name a modality`, decl.name.span, { help: `rename it, e.g. \`${name}_data\`` }));
        continue;
      }
      this.modalitySpans.set(name, decl.name.span);
      const shape = this.tensorType(decl.type);
      // An invalid `from` is reported once: "" stands for "declared", so MMB029 does not follow.
      const source = decl.source && (this.fileSource(decl.source) ?? "");
      this.modalities.push({ name, shape: shape ?? [1], line: this.line(decl.span), ...(source !== undefined ? { source } : {}) });
    }
  }

  private tensorType(type: Expr): number[] | undefined {
    const help = "write the per-sample shape, e.g. `float[64]` or `float[3, 32, 32]`";
    if (type.kind !== "Index" || type.base.kind !== "Name" || type.base.name !== "float") {
      return this.report(error("MMB013", "a modality's type must be `float[...]`", type.span, { help }));
    }
    const dims: number[] = [];
    for (const dim of type.indices) {
      if (dim.kind !== "Number" || !Number.isInteger(dim.value) || dim.value < 1) {
        return this.report(error("MMB013", "each dimension must be a positive whole number", dim.span, { help }));
      }
      dims.push(dim.value);
    }
    return dims;
  }

  /** `from "file[:field]"`: a path relative to the spec, and the field of a table or archive. */
  private fileSource(expr: Expr): string | undefined {
    if (expr.kind === "String" && expr.value.trim()) return expr.value;
    if (expr.kind === "Missing") return undefined;
    return this.report(error("MMB028", "`from` takes a file, as a string", expr.span, {
      help: 'e.g. `from "data/audio.npy"`, `from "data/feats.npz:audio"` or `from "data/meta.csv:label"`',
    }));
  }

  private checkTarget(decl: Extract<Decl, { kind: "TargetDecl" }> | undefined): ModelIR["target"] | undefined {
    if (!decl) {
      return this.report(error("MMB004", "the spec declares no target", { start: 0, end: 0 }, { help: "declare what the model predicts, e.g. `target y : class(6)`" }));
    }
    this.targetName = decl.name.name;
    const source = decl.source && (this.fileSource(decl.source) ?? "");
    const from = source !== undefined ? { source } : {};
    this.targetKind = decl.type.kind === "Name" && decl.type.name === "real" ? "real" : decl.type.kind === "Call" && decl.type.callee.kind === "Name" && decl.type.callee.name === "mask" ? "mask" : "class";
    const help = "use `class(N)` for N classes, `real` for regression or `mask(N, H, W)` for segmentation";
    const type = decl.type;
    if (type.kind === "Name" && type.name === "real") return { name: this.targetName, kind: "real", classes: 1, line: this.line(decl.span), ...from };
    if (type.kind === "Call" && type.callee.kind === "Name" && type.callee.name === "class") {
      const n = type.args[0]?.value;
      if (type.args.length === 1 && n?.kind === "Number" && Number.isInteger(n.value) && n.value >= 2) {
        return { name: this.targetName, kind: "class", classes: n.value, line: this.line(decl.span), ...from };
      }
      return this.report(error("MMB013", "`class(N)` needs a whole number of classes, at least 2", type.span, { help }));
    }
    if (type.kind === "Call" && type.callee.kind === "Name" && type.callee.name === "mask") {
      const dims = type.args.map((a) => a.value);
      if (dims.length === 3 && dims.every((d) => d.kind === "Number" && Number.isInteger(d.value) && d.value >= 1) && (dims[0] as { value: number }).value >= 2) {
        const [classes, height, width] = dims.map((d) => (d as { value: number }).value);
        return { name: this.targetName, kind: "mask", classes: classes!, shape: [height!, width!], line: this.line(decl.span), ...from };
      }
      return this.report(error("MMB013", "`mask(N, H, W)` needs whole numbers: at least 2 classes, a height and a width", type.span, { help }));
    }
    return this.report(error("MMB013", "unknown target type", type.span, { help }));
  }

  private checkEncoders(decls: Decl[]): void {
    let shared: { component: Component | undefined; span: Span } | undefined;
    const specific = new Map<string, { component: Component | undefined; span: Span }>();
    for (const decl of decls) {
      if (decl.kind !== "EncoderDecl") continue;
      const component = this.component(decl.value, library.encoders, "encoder");
      if (decl.index) {
        if (shared) this.report(error("MMB003", "`encoder[...]` is declared twice", decl.span, { related: [{ span: shared.span, message: "first declared here" }], help: "keep one shared encoder declaration" }));
        else shared = { component, span: decl.span };
      } else if (decl.target) {
        const name = decl.target.name;
        if (!this.modalitySpans.has(name)) {
          this.unknownName(name, decl.target.span, [...this.modalitySpans.keys()], "modality");
        } else if (specific.has(name)) {
          this.report(error("MMB003", `the encoder of \`${name}\` is declared twice`, decl.target.span, { related: [{ span: specific.get(name)!.span, message: "first declared here" }], help: "keep one encoder per modality" }));
        } else specific.set(name, { component, span: decl.value.span });
      }
    }
    for (const modality of this.modalities) {
      const chosen = specific.get(modality.name) ?? shared;
      if (!chosen) {
        this.report(error("MMB010", `modality \`${modality.name}\` has no encoder`, this.modalitySpans.get(modality.name)!, {
          help: `add \`encoder ${modality.name} = mlp(hidden: [128])\`, or \`encoder[m] = ...\` for every modality`,
        }));
        continue;
      }
      const component = chosen.component;
      if (!component) continue;
      if (component.kind === "transformer" && Number(component.options.dim) % Number(component.options.heads) !== 0) {
        this.report(error("MMB012", `\`transformer\` needs \`heads\` to divide \`dim\`, found ${component.options.heads} heads for ${component.options.dim}`, chosen.span, { help: "e.g. `transformer(dim: 32, heads: 4)`" }));
      }
      const rank = library.encoders[component.kind]?.inputRank;
      if (rank && !rank.includes(modality.shape.length)) {
        this.report(error("MMB024", `\`${component.kind}\` needs ${rank.join(" or ")}-dimensional samples, but \`${modality.name}\` is ${modality.shape.length}-dimensional`, chosen.span, {
          related: [{ span: this.modalitySpans.get(modality.name)!, message: `float[${modality.shape.join(", ")}]` }],
          help: "use `mlp(...)`, which flattens any shape, or an encoder made for this shape",
        }));
      }
      this.encoders.push(component);
    }
  }

  private checkFusion(decl: Extract<Decl, { kind: "FusionDecl" }> | undefined, classes: number | undefined): void {
    if (!decl) {
      this.report(error("MMB004", "the spec declares no fusion", { start: 0, end: 0 }, { help: "declare how features meet and the head, e.g. `fusion concat -> linear(6)`" }));
      return;
    }
    const value = decl.value;
    const builtin = (value.kind === "Name" || (value.kind === "Call" && value.callee.kind === "Name" && !this.isModalityReduction(value))) && !this.isFusionTerm(value);
    if (builtin) {
      this.fusion = this.component(value, library.fusions, "fusion");
      if (this.fusion) this.checkFusionPart(this.fusion, value.span);
    } else {
      const parts: Component[] = [];
      const fused = this.fusionExpr(value, new Set(), parts);
      const width = fused && this.fusionWidth(fused, new Map(), parts, value.span);
      if (fused && typeof width === "number") {
        this.fusion = { kind: "expression", options: { width }, line: this.line(decl.span) };
        this.fuse = { value: fused, parts, width, line: this.line(decl.span), text: this.text(decl.span) };
      } else if (width === "scalar") {
        this.report(error("MMB008", "a fusion must produce features, but this is one number", value.span, { help: "combine the features, e.g. `concat(j, w[j] * z[j])`" }));
      }
    }
    this.head = this.component(decl.head, library.heads, "head");
    if (this.head && classes !== undefined && this.head.options.out !== classes) {
      this.report(error("MMB012", `the head has ${this.head.options.out} outputs but the target has ${classes}`, decl.head.span, { help: `use \`linear(${classes})\`` }));
    }
  }

  private checkFusionPart(part: Component, span: Span): void {
    if (part.kind === "film" && !this.modalitySpans.has(String(part.options.by ?? ""))) {
      this.report(error("MMB012", "`film` needs the conditioning modality: `film(by: <modality>)`", span, { help: `e.g. \`film(by: ${this.modalities[0]?.name ?? "audio"})\`` }));
    }
    if (["sum", "gated", "film"].includes(part.kind)) {
      const sizes = new Set(this.encoders.map((e) => e.options.out));
      if (sizes.size > 1) {
        this.report(error("MMB024", `\`${part.kind}\` fusion needs every encoder to have the same \`out\`, found ${[...sizes].join(", ")}`, span, { help: "give every encoder the same `out:` option" }));
      }
    }
  }

  /** `sum(j, ...)`-style calls, which make a fusion an expression rather than a component. */
  private isModalityReduction(e: Extract<Expr, { kind: "Call" }>): boolean {
    return e.args.length === 2 && e.args.every((a) => !a.name) && e.args[0]!.value.kind === "Name";
  }

  /** A name or call that is a term of a fusion expression rather than a built-in fusion. */
  private isFusionTerm(e: Expr): boolean {
    const name = e.kind === "Name" ? e.name : e.kind === "Call" && e.callee.kind === "Name" ? e.callee.name : "";
    return !library.fusions[name] && (fusionFunctions.includes(name) || this.learnables.has(name) || name === "z");
  }

  private fusionExpr(e: Expr, bound: Set<string>, parts: Component[]): FExpr | undefined {
    const help = "a fusion combines `z[m]`, built-in fusions, learnables and numbers with + - * /, `concat(j, ...)`, `sum(j, ...)`, `mean(j, ...)`";
    const env: Env = { bound };
    switch (e.kind) {
      case "Missing":
        return undefined;
      case "Number":
        return { op: "number", value: e.value };
      case "Name": {
        if (library.fusions[e.name]) {
          const part = this.component(e, library.fusions, "fusion");
          if (!part) return undefined;
          this.checkFusionPart(part, e.span);
          parts.push(part);
          return { op: "part", index: parts.length - 1 };
        }
        const learnable = this.learnables.get(e.name);
        if (learnable && !learnable.perModality) return { op: "learnable", name: e.name };
        if (learnable || e.name === "z") return this.report(error("MMB009", `\`${e.name}\` has one value per modality: say which`, e.span, { help: `write \`${e.name}[m]\` inside \`concat(m, ...)\`` }));
        return this.unknownName(e.name, e.span, [...this.learnables.keys(), "z", ...Object.keys(library.fusions)], "name");
      }
      case "Index": {
        if (e.base.kind !== "Name" || e.indices.length !== 1) return this.report(error("MMB008", "not a fusion term", e.span, { help }));
        const name = e.base.name;
        const learnable = this.learnables.get(name);
        if (name !== "z" && !learnable?.perModality) {
          if (learnable) return this.report(error("MMB008", `\`${name}\` is one value, not one per modality`, e.span, { help: `drop the index: \`${name}\`` }));
          return this.unknownName(name, e.base.span, ["z", ...[...this.learnables.values()].filter((l) => l.perModality).map((l) => l.name)], "per-modality name");
        }
        const index = this.index(e.indices[0]!, env);
        if (!index) return undefined;
        return name === "z" ? { op: "features", modality: index } : { op: "learnable", name, index };
      }
      case "Unary": {
        if (e.op !== "-") return this.report(error("MMB008", "`not` has no meaning for features", e.span, { help }));
        const arg = this.fusionExpr(e.operand, bound, parts);
        return arg && { op: "unary", fn: "neg", arg };
      }
      case "Binary": {
        if (!["+", "-", "*", "/"].includes(e.op)) return this.report(error("MMB008", `\`${e.op}\` cannot combine features`, e.span, { help }));
        const left = this.fusionExpr(e.left, bound, parts);
        const right = this.fusionExpr(e.right, bound, parts);
        return left && right && { op: "binary", fn: e.op as "+", left, right };
      }
      case "Call": {
        if (e.callee.kind !== "Name") return this.report(error("MMB008", "not a fusion term", e.span, { help }));
        const fn = e.callee.name;
        if (["concat", "sum", "mean"].includes(fn) && this.isModalityReduction(e)) {
          const variable = (e.args[0]!.value as { name: string }).name;
          if (bound.has(variable) || this.modalitySpans.has(variable)) {
            return this.report(error("MMB007", `\`${variable}\` is already a modality here`, e.args[0]!.span, { help: `write \`${fn}(k, ...)\` with a fresh index name` }));
          }
          const body = this.fusionExpr(e.args[1]!.value, new Set([...bound, variable]), parts);
          return body && { op: "reduce", fn: fn as "concat", variable, body };
        }
        if (library.fusions[fn]) {
          const part = this.component(e, library.fusions, "fusion");
          if (!part) return undefined;
          this.checkFusionPart(part, e.span);
          parts.push(part);
          return { op: "part", index: parts.length - 1 };
        }
        if (fusionFunctions.includes(fn)) {
          if (e.args.length !== 1 || e.args[0]!.name) return this.report(error("MMB007", `\`${fn}\` takes 1 argument: \`${fn}(x)\``, e.span, { help: `write \`${fn}(x)\`` }));
          const arg = this.fusionExpr(e.args[0]!.value, bound, parts);
          return arg && { op: "unary", fn, arg };
        }
        const guess = nearest(fn, [...fusionFunctions, "concat", "sum", "mean", ...Object.keys(library.fusions)]);
        return this.report(error("MMB006", `\`${fn}\` cannot be used in a fusion`, e.callee.span, { help: guess ? `did you mean \`${guess}\`? (${help})` : help }));
      }
      default:
        return this.report(error("MMB008", "not a fusion term", e.span, { help }));
    }
  }

  /** Width of a fusion term's features for one binding of its modality indices; "scalar" for numbers. */
  private fusionWidth(e: FExpr, binding: Map<string, number>, parts: Component[], span: Span): number | "scalar" | undefined {
    const outs = this.encoders.map((c) => Number(c.options.out));
    const resolve = (ref: IndexRef): number => (ref.kind === "fixed" ? ref.modality : ref.kind === "var" ? binding.get(ref.name)! : 1 - resolve(ref.of));
    const mismatch = (what: string, widths: number[]) =>
      this.report(error("MMB024", `${what} needs features of equal width, found ${widths.join(" and ")}`, span, { help: "give the encoders the same `out:`, or `concat` the features instead" }));
    switch (e.op) {
      case "features":
        return outs[resolve(e.modality)];
      case "part":
        return ["concat", "attention"].includes(parts[e.index]!.kind) ? outs.reduce((a, b) => a + b, 0) : outs[0];
      case "number":
      case "learnable":
        return "scalar";
      case "unary":
        return this.fusionWidth(e.arg, binding, parts, span);
      case "binary": {
        const left = this.fusionWidth(e.left, binding, parts, span);
        const right = this.fusionWidth(e.right, binding, parts, span);
        if (left === undefined || right === undefined) return undefined;
        if (left === "scalar") return right;
        if (right === "scalar" || left === right) return left;
        return mismatch(`\`${e.fn}\``, [left, right]);
      }
      case "reduce": {
        const widths: number[] = [];
        for (let m = 0; m < this.modalities.length; m++) {
          const width = this.fusionWidth(e.body, new Map([...binding, [e.variable, m]]), parts, span);
          if (width === undefined) return undefined;
          if (width === "scalar") {
            return this.report(error("MMB008", `\`${e.fn}(${e.variable}, ...)\` in a fusion needs features, e.g. \`z[${e.variable}]\``, span, { help: "multiply the number by the features: `w[j] * z[j]`" }));
          }
          widths.push(width);
        }
        if (e.fn === "concat") return widths.reduce((a, b) => a + b, 0);
        return new Set(widths).size === 1 ? widths[0] : mismatch(`\`${e.fn}\``, widths);
      }
    }
  }

  private checkAuxHeads(decls: Decl[], classes: number | undefined): void {
    for (const decl of decls) {
      if (decl.kind !== "HeadDecl") continue;
      if (this.auxHead) {
        this.report(error("MMB003", "`head[...]` is declared twice", decl.span, { help: "declare the auxiliary heads once, with `head[m] = ...`" }));
        continue;
      }
      const head = this.component(decl.value, library.heads, "head");
      if (head && classes !== undefined && head.options.out !== classes) {
        this.report(error("MMB012", `an auxiliary head must have as many outputs as the target (${classes})`, decl.value.span, { help: `use \`linear(${classes})\`` }));
      }
      if (head) this.auxHead = head;
    }
  }

  private collectLearnables(decls: Decl[]): void {
    for (const decl of decls) {
      if (decl.kind !== "LearnableDecl") continue;
      const name = decl.target.name.name;
      if (this.learnables.has(name) || this.modalitySpans.has(name)) {
        this.report(error("MMB020", `\`${name}\` is defined twice`, decl.target.name.span, { help: "give it another name" }));
        continue;
      }
      const init = this.constantNumber(decl.value);
      if (init === undefined) continue;
      this.learnables.set(name, { name, perModality: decl.target.index !== undefined, init, line: this.line(decl.span), span: decl.target.name.span });
    }
  }

  private checkData(decl: Extract<Decl, { kind: "DataDecl" }> | undefined, target: ModelIR["target"] | undefined): Component | undefined {
    if (!decl) return { kind: "synthetic", options: this.defaults(library.dataSources.synthetic!), line: 1 };
    const data = this.component(decl.value, library.dataSources, "data source");
    if (data?.kind === "files") {
      const missing = [...this.modalities.filter((m) => m.source === undefined).map((m) => `modality \`${m.name}\``), ...(target && target.source === undefined ? [`target \`${target.name}\``] : [])];
      if (missing.length) {
        return this.report(error("MMB029", `\`files\` data needs a file for every modality and the target: ${missing.join(", ")} has none`, decl.value.span, {
          help: 'add `from "file"` to each, e.g. `modality audio : float[64] from "audio.npy"`',
        }));
      }
    } else if (data) {
      const declared = this.modalities.find((m) => m.source !== undefined);
      if (declared || target?.source !== undefined) {
        return this.report(error("MMB029", `\`from\` files are read by \`data files(...)\`, but the data is \`${data.kind}\``, decl.value.span, { help: "write `data files()` to train on the declared files, or remove the `from` clauses" }));
      }
    }
    const dominant = data?.options.dominant;
    if (data && dominant === undefined && this.modalities[0]) data.options.dominant = this.modalities[0].name;
    return data;
  }

  private checkOptimizer(decl: Extract<Decl, { kind: "OptimizerDecl" }> | undefined): Component | undefined {
    if (!decl) {
      return this.report(error("MMB004", "the spec declares no optimizer", { start: 0, end: 0 }, { help: "add e.g. `optimizer sgd(lr: 1e-3, momentum: 0.9)`" }));
    }
    return this.component(decl.value, library.optimizers, "optimizer");
  }

  private checkTrain(decl: Extract<Decl, { kind: "TrainDecl" }> | undefined): Record<string, OptionValue> {
    const settings: Record<string, OptionValue> = {};
    for (const [key, spec] of Object.entries(library.trainSettings)) settings[key] = spec.default!;
    for (const { key, value } of decl?.settings ?? []) {
      const spec = library.trainSettings[key.name];
      if (!spec) {
        const guess = nearest(key.name, Object.keys(library.trainSettings));
        this.report(error("MMB012", `unknown training setting \`${key.name}\``, key.span, {
          help: guess ? `did you mean \`${guess}\`?` : `settings: ${Object.keys(library.trainSettings).join(", ")}`,
        }));
        continue;
      }
      const checked = this.optionValue(value, spec, key.name);
      if (checked !== undefined) settings[key.name] = checked;
    }
    return settings;
  }

  private checkLoss(decl: Extract<Decl, { kind: "LossDecl" }> | undefined): ModelIR["loss"] | undefined {
    if (!decl) {
      return this.report(error("MMB004", "the spec declares no loss", { start: 0, end: 0 }, { help: "add e.g. `loss cross_entropy(out, y)`" }));
    }
    const value = this.expr(decl.value, { bound: new Set() });
    if (!value) return undefined;
    if (!this.expectScalar(value, decl.value.span, "the loss")) return undefined;
    return { value, line: this.line(decl.span), text: this.text(decl.span) };
  }

  // ---------------------------------------------------------------- components

  private defaults(spec: ComponentSpec): Record<string, OptionValue> {
    const options: Record<string, OptionValue> = {};
    for (const [name, option] of Object.entries(spec.options)) if (option.default !== undefined) options[name] = option.default;
    return options;
  }

  private component(expr: Expr, table: Record<string, ComponentSpec>, what: string): Component | undefined {
    const callee = expr.kind === "Call" ? expr.callee : expr;
    const args: Arg[] = expr.kind === "Call" ? expr.args : [];
    if (callee.kind === "Missing") return undefined;
    if (callee.kind !== "Name") {
      return this.report(error("MMB011", `expected a ${what} such as \`${Object.keys(table)[0]}(...)\``, expr.span, { help: `${what}s: ${Object.keys(table).join(", ")}` }));
    }
    const spec = table[callee.name];
    if (!spec) {
      const guess = nearest(callee.name, Object.keys(table));
      return this.report(error("MMB011", `unknown ${what} \`${callee.name}\``, callee.span, {
        help: guess ? `did you mean \`${guess}\`? (${what}s: ${Object.keys(table).join(", ")})` : `${what}s: ${Object.keys(table).join(", ")}`,
      }));
    }
    const options = this.defaults(spec);
    let ok = true;
    args.forEach((arg, i) => {
      const name = arg.name?.name ?? spec.positional?.[i];
      if (name === undefined) {
        ok = this.report(error("MMB012", `\`${callee.name}\` takes named options here`, arg.span, { help: `write \`${Object.keys(spec.options)[0] ?? "name"}: value\`` })) ?? false;
        return;
      }
      const option = spec.options[name];
      if (!option) {
        const guess = nearest(name, Object.keys(spec.options));
        const known = Object.keys(spec.options);
        ok = this.report(error("MMB012", `\`${callee.name}\` has no option \`${name}\``, arg.name?.span ?? arg.span, {
          help: guess ? `did you mean \`${guess}\`?` : known.length ? `options: ${known.join(", ")}` : `\`${callee.name}\` takes no options`,
        })) ?? false;
        return;
      }
      const value = this.optionValue(arg.value, option, name);
      if (value === undefined) ok = false;
      else options[name] = value;
    });
    for (const [name, option] of Object.entries(spec.options)) {
      if (options[name] === undefined && option.type !== "modality") {
        ok = this.report(error("MMB012", `\`${callee.name}\` needs the option \`${name}\` (${option.doc})`, expr.span, { help: `write \`${callee.name}(${name}: ...)\`` })) ?? false;
      }
    }
    return ok ? { kind: callee.name, options, line: this.line(expr.span) } : undefined;
  }

  private optionValue(expr: Expr, option: OptionSpec, name: string): OptionValue | undefined {
    const bad = (expected: string) => this.report(error("MMB012", `option \`${name}\` must be ${expected}`, expr.span, { help: option.doc }));
    switch (option.type) {
      case "int": {
        const n = this.constantNumber(expr);
        if (n === undefined) return undefined;
        return Number.isInteger(n) && n >= 0 ? n : bad("a whole number");
      }
      case "number":
        return this.constantNumber(expr);
      case "ints": {
        if (expr.kind !== "List") return bad("a list of whole numbers, e.g. `[128, 64]`");
        const items = expr.items.map((item) => (item.kind === "Number" && Number.isInteger(item.value) && item.value > 0 ? item.value : undefined));
        return items.every((i) => i !== undefined) ? (items as number[]) : bad("a list of positive whole numbers");
      }
      case "string":
        if (expr.kind === "String") return expr.value;
        if (expr.kind === "Name") return expr.name;
        return bad("a name or a string");
      case "bool":
        return expr.kind === "Name" && (expr.name === "true" || expr.name === "false") ? expr.name === "true" : bad("`true` or `false`");
      case "modality":
        if (expr.kind === "Name" && this.modalitySpans.has(expr.name)) return expr.name;
        if (expr.kind === "Name") return this.unknownName(expr.name, expr.span, [...this.modalitySpans.keys()], "modality");
        return bad("a modality name");
    }
  }

  /** A number written in the spec: a literal, possibly negated. */
  private constantNumber(expr: Expr): number | undefined {
    if (expr.kind === "Number") return expr.value;
    if (expr.kind === "Unary" && expr.op === "-" && expr.operand.kind === "Number") return -expr.operand.value;
    if (expr.kind === "Missing") return undefined;
    return this.report(error("MMB019", "expected a number", expr.span, { help: "write a literal such as `0.1` or `1e-3`" }));
  }

  private unknownName(name: string, span: Span, candidates: Iterable<string>, what: string): undefined {
    const guess = nearest(name, candidates);
    return this.report(error("MMB005", `unknown ${what} \`${name}\``, span, {
      label: "not declared",
      help: guess ? `did you mean \`${guess}\`?` : `declare it before use`,
    }));
  }

  // ---------------------------------------------------------------- balance block

  private checkBalance(stmts: Stmt[]): ModelIR["rule"] {
    this.collectRuleNames(stmts);
    for (const definition of this.definitions.values()) this.checkDefinition(definition);
    this.checkCycles();
    const actions: ActionIR[] = [];
    this.checkActions(stmts, [], actions);
    const values: RuleValue[] = [];
    for (const d of this.definitions.values()) {
      const index = d.stmt.target.index?.name;
      if (d.checked) values.push({ name: d.name, ...(index ? { index } : {}), value: d.checked, line: this.line(d.stmt.span), text: this.text(d.stmt.span) });
    }
    return { params: [...this.params].map(([name, p]) => ({ name, value: p.value, line: this.line(p.span) })), values, actions };
  }

  /** Checks a definition once, on first use, so that its kind is known wherever it is read. */
  private checkDefinition(definition: Definition): void {
    if (definition.state) return;
    definition.state = "checking";
    const env: Env = { bound: new Set(definition.stmt.target.index ? [definition.stmt.target.index.name] : []), reads: definition.reads };
    const value = this.expr(definition.stmt.value, env);
    if (value && ["features", "label"].includes(value.kind)) {
      this.report(error("MMB008", `\`${definition.name}\` must be a number, a head's outputs, a gradient or class means, not ${describeKind(value.kind)}`, definition.stmt.value.span, {
        help: "reduce it first, e.g. `norm(grad(...))`, `acc(out, y)` or `sum(batch, ...)`",
      }));
    } else definition.checked = value;
    definition.state = "done";
  }

  private collectRuleNames(stmts: Stmt[]): void {
    for (const stmt of stmts) {
      if (stmt.kind === "When") this.collectRuleNames(stmt.body);
      if (stmt.kind !== "Param" && stmt.kind !== "Define") continue;
      const nameSpan = stmt.kind === "Param" ? stmt.name : stmt.target.name;
      const name = nameSpan.name;
      const earlier = this.params.get(name)?.span ?? this.definitions.get(name)?.stmt.target.name.span ?? this.learnables.get(name)?.span ?? this.modalitySpans.get(name);
      if (earlier) {
        this.report(error("MMB020", `\`${name}\` is defined twice`, nameSpan.span, { related: [{ span: earlier, message: "first defined here" }], help: "rule values are equations: give each its own name" }));
        continue;
      }
      if (reservedValues.includes(name) || builtinFunctions.includes(name) || name === this.targetName) {
        this.report(error("MMB020", `\`${name}\` is a built-in name`, nameSpan.span, { help: `choose another name, e.g. \`${name}_value\`` }));
        continue;
      }
      if (stmt.kind === "Param") {
        const value = this.constantNumber(stmt.value);
        if (value !== undefined) this.params.set(name, { value, span: stmt.name.span });
      } else {
        this.definitions.set(name, { name, perModality: stmt.target.index !== undefined, stmt, reads: new Map() });
      }
    }
  }

  private checkCycles(): void {
    const state = new Map<string, "visiting" | "done">();
    /** `path[i]` is the i-th name on the walk, with the span where the previous one reads it. */
    const visit = (path: { name: string; span: Span }[]): void => {
      const name = path[path.length - 1]!.name;
      if (state.get(name) === "done") return;
      if (state.get(name) === "visiting") {
        const cycle = path.slice(path.findIndex((p) => p.name === name));
        const closing = cycle[cycle.length - 1]!;
        this.report(error("MMB017", `\`${name}\` depends on itself: ${cycle.map((c) => c.name).join(" → ")}`, closing.span, {
          label: "this use closes the cycle",
          related: cycle.slice(1, -1).map((r) => ({ span: r.span, message: `\`${r.name}\` is read here` })),
          help: `read last step's value with \`prev(${name}, 0)\`, or remove the dependency`,
        }));
        for (const c of cycle) state.set(c.name, "done");
        return;
      }
      state.set(name, "visiting");
      for (const [read, span] of this.definitions.get(name)?.reads ?? []) {
        if (this.definitions.has(read)) visit([...path, { name: read, span }]);
      }
      state.set(name, "done");
    };
    for (const [name, definition] of this.definitions) visit([{ name, span: definition.stmt.target.name.span }]);
  }

  private checkActions(stmts: Stmt[], when: RExpr[], out: ActionIR[]): void {
    for (const stmt of stmts) {
      const loops = new Set<string>();
      const env: Env = { bound: new Set(), loops };
      const line = this.line(stmt.span);
      const text = this.text(stmt.span);
      switch (stmt.kind) {
        case "When": {
          const condition = this.expr(stmt.condition, env);
          if (condition && condition.kind !== "bool") {
            this.report(error("MMB021", `a \`when\` condition must be true or false for the step, found ${describeKind(condition.kind)}`, stmt.condition.span, {
              help: condition.kind === "batchBool" ? "reduce over the batch first, e.g. `mean(batch, ...) > 0.5`" : "compare it, e.g. `epoch < 50`",
            }));
          }
          if (loops.size > 0) {
            this.report(error("MMB009", "a `when` condition cannot depend on a modality index", stmt.condition.span, { help: "reduce over modalities first, e.g. `max(k, x[k]) > 1`" }));
          }
          this.checkActions(stmt.body, condition ? [...when, condition] : when, out);
          break;
        }
        case "Scale": {
          const target = this.actionTarget(stmt.target, env, ["grad", "lr"]);
          const factor = this.expr(stmt.factor, env);
          if (target && factor && this.expectScalar(factor, stmt.factor.span, "a scale factor")) {
            out.push({ kind: target.fn === "lr" ? "scaleLr" : "scale", group: target.group, factor, when, loop: [...loops], line, text });
          }
          break;
        }
        case "Noise": {
          const target = this.actionTarget(stmt.target, env, ["grad"]);
          const dist = stmt.distribution;
          if (dist.kind !== "Call" || dist.callee.kind !== "Name" || dist.callee.name !== "normal" || dist.args.length !== 2) {
            this.report(error("MMB007", "noise must be drawn from `normal(mean, std)`", dist.span, { help: "e.g. `noise grad(encoder[m]) ~ normal(0, std(grad(encoder[m])))`" }));
            break;
          }
          const mean = this.expr(dist.args[0]!.value, env);
          const std = this.expr(dist.args[1]!.value, env);
          if (target && mean && std && this.expectScalar(mean, dist.args[0]!.span, "the noise mean") && this.expectScalar(std, dist.args[1]!.span, "the noise standard deviation")) {
            out.push({ kind: "noise", group: target.group, mean, std, when, loop: [...loops], line, text });
          }
          break;
        }
        case "AddLoss": {
          const value = this.expr(stmt.value, env);
          if (value && this.expectScalar(value, stmt.value.span, "an added loss")) {
            if (loops.size > 0) {
              this.report(error("MMB009", "an added loss must be one number: it cannot depend on a free modality index", stmt.value.span, { help: "sum it over the modalities: `add loss sum(m, ...)`" }));
            } else out.push({ kind: "addLoss", value, when, loop: [], line, text });
          }
          break;
        }
        case "Minimize": {
          const value = this.expr(stmt.value, env);
          const group = this.group(stmt.group, env);
          const optimizer = this.component(stmt.optimizer, library.optimizers, "optimizer");
          if (!value || !group || !optimizer || !this.expectScalar(value, stmt.value.span, "a minimised objective")) break;
          const key = JSON.stringify(group);
          const earlier = this.minimized.get(key);
          if (earlier) {
            this.report(error("MMB022", `\`${this.text(stmt.group.span)}\` is already minimised by another objective`, stmt.group.span, {
              related: [{ span: earlier, message: "first minimised here" }],
              help: "a group has one objective: add the two objectives into one `minimize`",
            }));
            break;
          }
          this.minimized.set(key, stmt.group.span);
          out.push({ kind: "minimize", value, group, optimizer, when, loop: [...loops], line, text });
          break;
        }
        case "Replace": {
          const target = this.actionTarget(stmt.target, env, ["grad"]);
          const value = this.expr(stmt.value, env);
          if (!target || !value) break;
          if (value.kind !== "grad") {
            this.report(error("MMB008", `a gradient can only be replaced by a gradient, found ${describeKind(value.kind)}`, stmt.value.span, { help: "combine gradients of the same group, e.g. `0.5 * (grad(G, L1) + grad(G, L2))`; to rescale, use `scale`" }));
            break;
          }
          const foreign = this.gradientGroups(value, new Map()).find((g) => JSON.stringify(g) !== JSON.stringify(target.group));
          if (foreign) {
            this.report(error("MMB016", "a replacement must be built from gradients of the group it replaces", stmt.value.span, {
              help: `use \`grad(${this.text((stmt.target as Extract<Expr, { kind: "Call" }>).args[0]!.value.span)}, ...)\` on the right`,
            }));
            break;
          }
          out.push({ kind: "replace", group: target.group, value, when, loop: [...loops], line, text });
          break;
        }
        case "Drop": {
          const target = stmt.target;
          if (target.kind !== "Index" || target.base.kind !== "Name" || target.base.name !== "z" || target.indices.length !== 1) {
            if (target.kind !== "Missing") this.report(error("MMB018", "`drop` applies to a modality's features `z[m]`", target.span, { help: "e.g. `drop z[m] with 0.3`" }));
            break;
          }
          const modality = this.index(target.indices[0]!, env);
          const probability = this.expr(stmt.probability, env);
          if (!modality || !probability || !this.expectScalar(probability, stmt.probability.span, "a drop probability")) break;
          const early = [probability, ...when].find((v) => !v.host);
          if (early) {
            this.report(error("MMB027", "a drop decides the forward pass, so its probability and conditions must be known before it", early === probability ? stmt.probability.span : stmt.span, {
              help: "use numbers, `param`s, `step` and `epoch` here, not values computed from this step's outputs",
            }));
            break;
          }
          out.push({ kind: "drop", modality, probability, when, loop: [...loops], line, text });
          break;
        }
        case "Param":
        case "Define":
          break;
      }
    }
  }

  /** The groups of the `grad(...)` an expression is built from, through definitions it reads. */
  private gradientGroups(e: RExpr, renamed: Map<string, IndexRef>): GroupRef[] {
    const rename = (ref: IndexRef): IndexRef => (ref.kind === "var" ? (renamed.get(ref.name) ?? ref) : ref.kind === "other" ? { kind: "other", of: rename(ref.of) } : ref);
    switch (e.op) {
      case "grad":
        return ["modality" in e.group && e.group.modality ? ({ ...e.group, modality: rename(e.group.modality) } as GroupRef) : e.group];
      case "binary":
        return [...this.gradientGroups(e.left, renamed), ...this.gradientGroups(e.right, renamed)];
      case "unary":
        return this.gradientGroups(e.arg, renamed);
      case "value": {
        const definition = this.definitions.get(e.name);
        const index = definition?.stmt.target.index?.name;
        const inner = new Map(renamed);
        if (index && e.index) inner.set(index, rename(e.index));
        return definition?.checked ? this.gradientGroups(definition.checked, inner) : [];
      }
      default:
        return [];
    }
  }

  private actionTarget(expr: Expr, env: Env, allowed: string[]): { fn: string; group: GroupRef } | undefined {
    if (expr.kind === "Call" && expr.callee.kind === "Name" && allowed.includes(expr.callee.name) && expr.args.length === 1) {
      const group = this.group(expr.args[0]!.value, env);
      return group && { fn: expr.callee.name, group };
    }
    if (expr.kind === "Missing") return undefined;
    return this.report(error("MMB018", `this action applies to ${allowed.map((a) => `\`${a}(G)\``).join(" or ")} of a parameter group`, expr.span, {
      help: "e.g. `scale grad(encoder[m]) by k[m]`",
    }));
  }

  private expectScalar(value: RExpr, span: Span, what: string): boolean {
    if (value.kind === "scalar") return true;
    if (value.kind === "batch") {
      this.report(error("MMB023", `${what} must be one number per step, but this is one per sample`, span, { help: "reduce over the batch: `mean(batch, ...)` or `sum(batch, ...)`" }));
    } else {
      this.report(error("MMB008", `${what} must be a number, found ${describeKind(value.kind)}`, span, { help: "compute a number from it, e.g. `norm(grad(...))`" }));
    }
    return false;
  }

  // ---------------------------------------------------------------- expressions

  /**
   * Completes a fresh node literal into a typed expression, in place: spreading the many node shapes
   * into new objects took a third of the checker's time on long specs.
   */
  private make(node: RNode, kind: ValueKind, children: RExpr[], extra: { host?: boolean; secondOrder?: boolean } = {}): RExpr {
    const typed = node as RExpr;
    typed.kind = kind;
    typed.host = extra.host ?? (children.length > 0 && children.every((c) => c.host));
    typed.secondOrder = extra.secondOrder ?? children.some((c) => c.secondOrder);
    return typed;
  }

  private expr(e: Expr, env: Env): RExpr | undefined {
    switch (e.kind) {
      case "Missing":
        return undefined;
      case "Number":
        return this.make({ op: "number", value: e.value }, "scalar", [], { host: true });
      case "String":
        return this.report(error("MMB008", "a string cannot be used in an equation", e.span, { help: "strings only name files and options" }));
      case "List":
        return this.report(error("MMB008", "a list cannot be used in an equation", e.span, { help: "lists only give component options such as `hidden: [128, 64]`" }));
      case "Name":
        return this.name(e.name, e.span, env);
      case "Index":
        return this.indexed(e, env);
      case "Member":
        return this.report(error("MMB008", `\`.${e.property.name}\` names a parameter group, which is not a number`, e.span, { help: `use it inside \`grad(...)\`, e.g. \`norm(grad(${this.text(e.span)}))\`` }));
      case "Unary": {
        const operand = this.expr(e.operand, env);
        if (!operand) return undefined;
        const allowed: ValueKind[] = e.op === "not" ? ["bool", "batchBool"] : ["scalar", "batch", "logits", "grad"];
        if (!this.expectKind(operand, allowed, e.operand.span, `\`${e.op}\``)) return undefined;
        return this.make({ op: "unary", fn: e.op === "not" ? "not" : "neg", arg: operand }, operand.kind, [operand]);
      }
      case "Binary":
        return this.binary(e, env);
      case "If": {
        const condition = this.expr(e.condition, env);
        const then = this.expr(e.then, env);
        const otherwise = this.expr(e.otherwise, env);
        if (!condition || !then || !otherwise) return undefined;
        if (!this.expectKind(condition, ["bool", "batchBool"], e.condition.span, "an `if` condition")) return undefined;
        if (!this.expectKind(then, ["scalar", "batch"], e.then.span, "an `if` branch") || !this.expectKind(otherwise, ["scalar", "batch"], e.otherwise.span, "an `if` branch")) return undefined;
        const kind = [condition.kind, then.kind, otherwise.kind].some((k) => k === "batch" || k === "batchBool") ? "batch" : "scalar";
        return this.make({ op: "if", condition, then, otherwise }, kind, [condition, then, otherwise]);
      }
      case "Call":
        return this.call(e, env);
    }
  }

  private expectKind(value: RExpr, kinds: ValueKind[], span: Span, what: string): boolean {
    if (kinds.includes(value.kind)) return true;
    const wanted = kinds.map(describeKind).join(" or ");
    this.report(error("MMB008", `${what} needs ${wanted}, found ${describeKind(value.kind)}`, span, { help: kindHelp(value.kind) }));
    return false;
  }

  private name(name: string, span: Span, env: Env): RExpr | undefined {
    if (name === "step" || name === "epoch") return this.make({ op: "time", which: name }, "scalar", [], { host: true });
    if (name === "out") return this.make({ op: "output", which: "out" }, "logits", [], { host: false });
    if (name === this.targetName) return this.make({ op: "target" }, "label", [], { host: false });
    const param = this.params.get(name);
    if (param) return this.make({ op: "param", name }, "scalar", [], { host: true });
    const definition = this.definitions.get(name);
    if (definition) {
      if (definition.perModality) {
        return this.report(error("MMB009", `\`${name}\` has one value per modality: say which`, span, { help: `index it, e.g. \`${name}[m]\` inside a per-modality definition, or \`mean(k, ${name}[k])\`` }));
      }
      if (!env.underHistory) env.reads?.set(name, span);
      return this.valueRef(definition, undefined, env);
    }
    const learnable = this.learnables.get(name);
    if (learnable) {
      if (learnable.perModality) return this.report(error("MMB009", `learnable \`${name}\` has one value per modality: say which`, span, { help: `write \`${name}[m]\`` }));
      return this.make({ op: "learnable", name }, "scalar", [], { host: false });
    }
    if (env.bound.has(name) || env.loops?.has(name)) {
      return this.report(error("MMB008", `\`${name}\` is a modality index, not a number`, span, { help: `use it inside brackets, e.g. \`x[${name}]\`` }));
    }
    if (name === "z" || perModalityOutputs.includes(name)) {
      return this.report(error("MMB009", `\`${name}\` has one value per modality: say which`, span, { help: `write \`${name}[m]\`` }));
    }
    if (name === "encoder" || name === "fusion") {
      return this.report(error("MMB008", `\`${name}\` names a parameter group, which is not a number`, span, { help: `use it inside \`grad(...)\`` }));
    }
    const known = [...this.params.keys(), ...this.definitions.keys(), ...this.learnables.keys(), "step", "epoch", "out", this.targetName];
    return this.unknownName(name, span, known, "name");
  }

  private valueRef(definition: Definition, index: IndexRef | undefined, env: Env): RExpr {
    this.checkDefinition(definition);
    const value = definition.checked;
    const kind: ValueKind = value?.kind ?? "scalar";
    const host = value?.host ?? false;
    return this.make({ op: "value", name: definition.name, ...(index ? { index } : {}) }, kind, [], { host, secondOrder: !env.underHistory && (value?.secondOrder ?? false) });
  }

  private indexed(e: Extract<Expr, { kind: "Index" }>, env: Env): RExpr | undefined {
    if (e.base.kind !== "Name") return this.report(error("MMB008", "only names can be indexed by a modality", e.span, { help: "write e.g. `s[m]`" }));
    const name = e.base.name;
    if (e.indices.length !== 1) return this.report(error("MMB007", `\`${name}\` takes one modality index`, e.span, { help: `write \`${name}[m]\`` }));
    const definition = this.definitions.get(name);
    const learnable = this.learnables.get(name);
    const perModality = definition?.perModality ?? learnable?.perModality ?? (name === "z" || perModalityOutputs.includes(name));
    if (!perModality) {
      if (definition || learnable || this.params.has(name)) {
        return this.report(error("MMB008", `\`${name}\` is one value, not one per modality`, e.span, { help: `drop the index: \`${name}\`` }));
      }
      if (name === "encoder") return this.report(error("MMB008", "`encoder[...]` names a parameter group, which is not a number", e.span, { help: `use it inside \`grad(...)\`, e.g. \`norm(grad(${this.text(e.span)}))\`` }));
      return this.name(name, e.base.span, env);
    }
    const index = this.index(e.indices[0]!, env);
    if (!index) return undefined;
    if (definition) {
      if (!env.underHistory) env.reads?.set(name, e.base.span);
      return this.valueRef(definition, index, env);
    }
    if (learnable) return this.make({ op: "learnable", name, index }, "scalar", [], { host: false });
    if (name === "z") return this.make({ op: "output", which: "z", modality: index }, "features", [], { host: false });
    if (name === "head") {
      if (!this.auxHead) return this.report(error("MMB025", "`head[m]` needs auxiliary heads", e.span, { help: "declare them: `head[m] = linear(<classes>)`" }));
      return this.make({ op: "output", which: "aux", modality: index }, "logits", [], { host: false });
    }
    if (name === "alone" || name === "without") return this.make({ op: "output", which: name, modality: index }, "logits", [], { host: false });
    if (!["concat", "sum"].includes(this.fusion?.kind ?? "") || this.head?.kind !== "linear" || this.targetKind === "mask") {
      return this.report(error("MMB015", "`contrib[m]` needs a head that is linear in the features", e.span, {
        help: "use `fusion concat -> linear(N)` or `fusion sum -> linear(N)`, or score a modality with an auxiliary head `head[m]`",
      }));
    }
    return this.make({ op: "output", which: "contrib", modality: index }, "logits", [], { host: false });
  }

  private index(e: Expr, env: Env): IndexRef | undefined {
    if (e.kind === "Name") {
      if (env.bound.has(e.name) || env.loops?.has(e.name)) return { kind: "var", name: e.name };
      const fixed = this.modalities.findIndex((m) => m.name === e.name);
      if (fixed >= 0) return { kind: "fixed", modality: fixed };
      if (env.loops && !this.definitions.has(e.name) && !this.params.has(e.name)) {
        env.loops.add(e.name);
        return { kind: "var", name: e.name };
      }
      return this.report(error("MMB009", `\`${e.name}\` is not a modality index here`, e.span, {
        help: `bind it on the left (\`x[${e.name}] = ...\`), in a reduction (\`sum(${e.name}, ...)\`), or name a modality: ${this.modalities.map((m) => m.name).join(", ")}`,
      }));
    }
    if (e.kind === "Call" && e.callee.kind === "Name" && e.callee.name === "other" && e.args.length === 1) {
      const of = this.index(e.args[0]!.value, env);
      if (!of) return undefined;
      if (this.modalities.length !== 2) {
        const third = this.modalities[2];
        return this.report(error("MMB014", `\`other(m)\` needs exactly two modalities, but this model has ${this.modalities.length}`, e.span, {
          label: this.modalities.length > 2 ? `ambiguous with ${this.modalities.map((m) => m.name).join(", ")}` : "there is no other modality",
          related: third ? [{ span: this.modalitySpans.get(third.name)!, message: "third modality declared here" }] : [],
          help: `compare against the others' mean instead: \`mean(k != ${this.text(e.args[0]!.value.span)}, ...)\``,
        }));
      }
      return { kind: "other", of };
    }
    return this.report(error("MMB009", "a modality index must be an index variable, a modality name or `other(m)`", e.span, { help: "e.g. `s[m]`, `s[audio]`, `s[other(m)]`" }));
  }

  private binary(e: Extract<Expr, { kind: "Binary" }>, env: Env): RExpr | undefined {
    const left = this.expr(e.left, env);
    const right = this.expr(e.right, env);
    if (!left || !right) return undefined;
    const numeric: ValueKind[] = ["scalar", "batch"];
    const logical: ValueKind[] = ["bool", "batchBool"];
    const perSample = left.kind.startsWith("batch") || right.kind.startsWith("batch");
    if (e.op === "and" || e.op === "or") {
      if (!this.expectKind(left, logical, e.left.span, `\`${e.op}\``) || !this.expectKind(right, logical, e.right.span, `\`${e.op}\``)) return undefined;
      return this.make({ op: "binary", fn: e.op, left, right }, perSample ? "batchBool" : "bool", [left, right]);
    }
    const vector = this.vectorArithmetic(e.op, left, right);
    if (vector) return this.make({ op: "binary", fn: e.op, left, right }, vector, [left, right]);
    if (!this.expectKind(left, numeric, e.left.span, `\`${e.op}\``) || !this.expectKind(right, numeric, e.right.span, `\`${e.op}\``)) return undefined;
    const comparison = ["<", "<=", ">", ">=", "==", "!="].includes(e.op);
    const kind: ValueKind = comparison ? (perSample ? "batchBool" : "bool") : perSample ? "batch" : "scalar";
    return this.make({ op: "binary", fn: e.op, left, right }, kind, [left, right]);
  }

  /**
   * Head outputs and gradients combine like vectors: added to or subtracted from their own kind,
   * scaled by a number. Returns the result's kind, or undefined when the operands are not vectors.
   */
  private vectorArithmetic(op: string, left: RExpr, right: RExpr): ValueKind | undefined {
    const vectors: ValueKind[] = ["logits", "grad"];
    if ((op === "+" || op === "-") && vectors.includes(left.kind) && left.kind === right.kind) return left.kind;
    if (op === "*" && vectors.includes(left.kind) && right.kind === "scalar") return left.kind;
    if (op === "*" && vectors.includes(right.kind) && left.kind === "scalar") return right.kind;
    if (op === "/" && vectors.includes(left.kind) && right.kind === "scalar") return left.kind;
    return undefined;
  }

  private group(e: Expr, env: Env): GroupRef | undefined {
    const help = "groups: `encoder[m]`, `encoder[m].last`, `fusion`, `head`, `head[m]`, or a learnable";
    if (e.kind === "Name") {
      if (e.name === "head") return { kind: "head" };
      if (e.name === "fusion") {
        const kinds = this.fuse ? this.fuse.parts.map((p) => p.kind) : [this.fusion?.kind ?? ""];
        if (!kinds.some((k) => ["gated", "film", "attention"].includes(k))) {
          return this.report(error("MMB025", `\`${this.text(e.span)}\` has no parameters: this fusion learns none`, e.span, { help: "only `gated`, `film` and `attention` fusion learn parameters" }));
        }
        return { kind: "fusion" };
      }
      const learnable = this.learnables.get(e.name);
      if (learnable) return { kind: "learnable", name: e.name };
      if (e.name === "encoder") return this.report(error("MMB009", "`encoder` has one group per modality: say which", e.span, { help: "write `encoder[m]`" }));
      return this.report(error("MMB025", `\`${e.name}\` is not a parameter group`, e.span, { help }));
    }
    if (e.kind === "Member") {
      const base = this.group(e.object, env);
      if (!base) return undefined;
      const property = e.property.name;
      if (property === "weight" && !base.weights) return { ...base, weights: true };
      if (base.kind === "encoder" && base.part === "all" && !base.weights && (encoderParts as readonly string[]).includes(property)) {
        const part = property as EncoderPart;
        const lacking = this.encodersLacking(base.modality, part);
        if (lacking) {
          return this.report(error("MMB025", `the ${lacking.kind} encoder of \`${lacking.modality}\` has no ${part} layers`, e.property.span, { help: `layers of each encoder: ${Object.entries(layerKinds).map(([k, v]) => `${k}: ${v.join(", ")}`).join("; ")}` }));
        }
        return { ...base, part };
      }
      return this.report(error("MMB025", `no parameter group \`${this.text(e.span)}\``, e.property.span, {
        help: "`encoder[m].last` is an encoder's last linear layer; `.conv`, `.dense`, `.rnn`, `.attention`, `.norm` its layers of a kind; `.weight` any group's weights without biases",
      }));
    }
    if (e.kind === "Index" && e.base.kind === "Name" && e.indices.length === 1) {
      const name = e.base.name;
      if (name === "encoder" || name === "head" || this.learnables.get(name)?.perModality) {
        const modality = this.index(e.indices[0]!, env);
        if (!modality) return undefined;
        if (name === "encoder") return { kind: "encoder", modality, part: "all" };
        if (name === "head") {
          if (!this.auxHead) return this.report(error("MMB025", "`head[m]` needs auxiliary heads", e.span, { help: "declare them: `head[m] = linear(<classes>)`" }));
          return { kind: "auxHead", modality };
        }
        return { kind: "learnable", name, modality };
      }
    }
    if (e.kind === "Missing") return undefined;
    return this.report(error("MMB025", `\`${this.text(e.span)}\` is not a parameter group`, e.span, { help }));
  }

  /** The first encoder (of those `ref` ranges over) that has no layers of kind `part`. */
  private encodersLacking(ref: IndexRef, part: EncoderPart): { kind: string; modality: string } | undefined {
    const indices = ref.kind === "fixed" ? [ref.modality] : this.encoders.map((_, i) => i);
    for (const i of indices) {
      const kind = this.encoders[i]?.kind;
      if (kind && !layerKinds[kind]?.includes(part)) return { kind, modality: this.modalities[i]!.name };
    }
    return undefined;
  }

  /** A signature of a group's parameter shapes where the checker can know it; undefined if not. */
  private groupShape(group: GroupRef): string | undefined {
    if (group.weights) {
      const whole = this.groupShape({ ...group, weights: false });
      return whole === undefined ? undefined : `${whole} (weights)`;
    }
    const modality = (ref: IndexRef): number | undefined => (ref.kind === "fixed" ? ref.modality : undefined);
    const classes = Number(this.head?.options.out ?? 0);
    const fusedWidth = (): number | undefined => {
      if (this.fuse) return this.fuse.width;
      const outs = this.encoders.map((e) => Number(e.options.out));
      if (["concat", "attention"].includes(this.fusion?.kind ?? "")) return outs.reduce((a, b) => a + b, 0);
      return outs[0];
    };
    switch (group.kind) {
      case "head":
        return this.head?.kind === "linear" ? `[${fusedWidth()},${classes}]` : undefined;
      case "auxHead": {
        if (this.auxHead?.kind !== "linear") return undefined;
        const outs = new Set(this.encoders.map((e) => Number(e.options.out)));
        const m = modality(group.modality);
        if (m !== undefined) return `[${this.encoders[m]?.options.out},${classes}]`;
        return outs.size === 1 ? `[${[...outs][0]},${classes}]` : undefined;
      }
      case "learnable":
        return "[]";
      case "encoder": {
        const m = modality(group.modality);
        const candidates = m !== undefined ? [this.encoders[m]] : this.encoders;
        const signatures = new Set(candidates.map((e, i) => JSON.stringify([e?.kind, e?.options, group.part === "all" ? this.modalities[m ?? i]?.shape : null])));
        return signatures.size === 1 ? [...signatures][0] : undefined;
      }
      case "fusion":
        return undefined;
    }
  }

  private call(e: Extract<Expr, { kind: "Call" }>, env: Env): RExpr | undefined {
    if (e.callee.kind !== "Name") return this.report(error("MMB006", "only built-in functions can be called", e.callee.span, { help: "see the function list in README.md" }));
    const fn = e.callee.name;
    const args = e.args;
    const arity = (n: number, usage: string): boolean => {
      if (args.length === n && args.every((a) => !a.name)) return true;
      this.report(error("MMB007", `\`${fn}\` takes ${n} argument${n === 1 ? "" : "s"}: \`${usage}\``, e.span, { help: `write \`${usage}\`` }));
      return false;
    };
    if (unaryMath.includes(fn)) {
      if (!arity(1, `${fn}(x)`)) return undefined;
      const arg = this.expr(args[0]!.value, env);
      if (!arg) return undefined;
      if (arg.kind === "grad" && fn === "abs") return this.make({ op: "unary", fn, arg }, "grad", [arg]);
      return this.expectKind(arg, ["scalar", "batch"], args[0]!.span, `\`${fn}\``) ? this.make({ op: "unary", fn, arg }, arg.kind, [arg]) : undefined;
    }
    if (modalityReductions.includes(fn)) return this.reduction(e, fn as "sum" | "mean" | "max" | "min", env);
    if (fn === "grad") {
      if (args.length !== 2 && !arity(1, "grad(encoder[m])")) return undefined;
      if (args.some((a) => a.name)) return this.report(error("MMB007", "`grad` takes a group and optionally a loss: `grad(G)` or `grad(G, L)`", e.span, { help: "e.g. `grad(encoder[m], cross_entropy(contrib[m], y))`" }));
      const group = this.group(args[0]!.value, env);
      const loss = args[1] ? this.expr(args[1].value, env) : undefined;
      if (args[1] && (!loss || !this.expectScalar(loss, args[1].span, "the loss of `grad(G, L)`"))) return undefined;
      return group && this.make({ op: "grad", group, ...(loss ? { loss } : {}) }, "grad", [], { host: false, secondOrder: true });
    }
    if ((gradStats as readonly string[]).includes(fn)) {
      if (!arity(1, `${fn}(grad(encoder[m]))`)) return undefined;
      const arg = this.expr(args[0]!.value, env);
      if (!arg) return undefined;
      if (arg.kind !== "grad") return this.report(error("MMB008", `\`${fn}\` takes a gradient, found ${describeKind(arg.kind)}`, args[0]!.span, { help: `e.g. \`${fn}(grad(encoder[m]))\`` }));
      return this.make({ op: "gradStat", stat: fn as "norm", arg }, "scalar", [arg]);
    }
    if (fn === "cos" || fn === "dot") {
      if (!arity(2, `${fn}(grad(A), grad(B))`)) return undefined;
      const a = this.expr(args[0]!.value, env);
      const b = this.expr(args[1]!.value, env);
      if (!a || !b) return undefined;
      for (const [value, arg] of [[a, args[0]!], [b, args[1]!]] as const) {
        if (value.kind !== "grad") return this.report(error("MMB008", `\`${fn}\` takes gradients, found ${describeKind(value.kind)}`, arg.span, { help: `e.g. \`${fn}(grad(head), grad(head[m]))\`` }));
      }
      if (a.op === "grad" && b.op === "grad") {
        const shapeA = this.groupShape(a.group);
        const shapeB = this.groupShape(b.group);
        if (shapeA !== undefined && shapeB !== undefined && shapeA !== shapeB) {
          this.report(error("MMB016", `\`${fn}\` needs two gradients of the same shape`, e.span, {
            related: [{ span: args[0]!.span, message: `shape ${shapeA}` }, { span: args[1]!.span, message: `shape ${shapeB}` }],
            help: "compare groups of equal shape, e.g. with `fusion sum` the fused head and the auxiliary heads match",
          }));
          return undefined;
        }
      }
      return this.make(fn === "cos" ? { op: "gradCos", a, b } : { op: "gradDot", a, b }, "scalar", [a, b]);
    }
    if ((metricFns as readonly string[]).includes(fn)) {
      if (!arity(2, `${fn}(out, ${this.targetName || "y"})`)) return undefined;
      const output = this.expr(args[0]!.value, env);
      const target = this.expr(args[1]!.value, env);
      if (!output || !target) return undefined;
      if (!this.expectKind(output, ["logits"], args[0]!.span, `\`${fn}\``) || !this.expectKind(target, ["label"], args[1]!.span, `\`${fn}\``)) return undefined;
      return this.make({ op: "metric", fn: fn as "acc", output, target }, fn === "prob" ? "batch" : "scalar", [output, target]);
    }
    if (fn === "prev" || fn === "ema") {
      const usage = fn === "prev" ? "prev(x, init)" : "ema(x, beta)";
      if (!arity(2, usage)) return undefined;
      const arg = this.expr(args[0]!.value, { ...env, underHistory: true });
      const constant = this.constantNumber(args[1]!.value);
      if (!arg || constant === undefined) return undefined;
      if (!this.expectKind(arg, ["scalar"], args[0]!.span, `\`${fn}\``)) return undefined;
      if (fn === "ema" && !(constant >= 0 && constant < 1)) return this.report(error("MMB019", "`ema`'s beta must be in [0, 1)", args[1]!.span, { help: "e.g. `ema(x, 0.9)`" }));
      const node: RNode = fn === "prev" ? { op: "history", fn, id: this.historyCount++, arg, init: constant } : { op: "history", fn, id: this.historyCount++, arg, init: 0, beta: constant };
      return this.make(node, "scalar", [arg], { host: false, secondOrder: false });
    }
    if (fn === "delta") {
      if (!arity(1, "delta(x)")) return undefined;
      const arg = this.expr(args[0]!.value, env);
      if (!arg || !this.expectKind(arg, ["scalar"], args[0]!.span, "`delta`")) return undefined;
      return this.make({ op: "history", fn, id: this.historyCount++, arg, init: 0 }, "scalar", [arg], { host: false });
    }
    if (fn === "class_mean") {
      if (!arity(3, "class_mean(z[m], y, momentum)")) return undefined;
      const features = this.expr(args[0]!.value, env);
      const target = this.expr(args[1]!.value, env);
      const momentum = this.constantNumber(args[2]!.value);
      if (!features || !target || momentum === undefined) return undefined;
      if (!this.expectKind(features, ["features"], args[0]!.span, "`class_mean`") || !this.expectKind(target, ["label"], args[1]!.span, "`class_mean`")) return undefined;
      if (!(momentum >= 0 && momentum < 1)) return this.report(error("MMB019", "`class_mean`'s momentum must be in [0, 1)", args[2]!.span, { help: "e.g. `class_mean(z[m], y, 0.9)`" }));
      if (this.targetKind !== "class") return this.report(error("MMB008", "`class_mean` needs a class target", args[1]!.span, { help: "class means exist for `target y : class(N)`" }));
      return this.make({ op: "classMean", id: this.historyCount++, features, target, momentum }, "prototypes", [features, target], { host: false, secondOrder: false });
    }
    if (fn === "distance") {
      if (!arity(2, "distance(z[m], P)")) return undefined;
      const features = this.expr(args[0]!.value, env);
      const prototypes = this.expr(args[1]!.value, env);
      if (!features || !prototypes) return undefined;
      if (!this.expectKind(features, ["features"], args[0]!.span, "`distance`") || !this.expectKind(prototypes, ["prototypes"], args[1]!.span, "`distance`")) return undefined;
      return this.make({ op: "distance", features, prototypes }, "logits", [features, prototypes]);
    }
    if (fn === "per_sample") {
      if (!arity(1, "per_sample(norm(grad(G)))")) return undefined;
      const arg = this.expr(args[0]!.value, env);
      if (!arg || !this.expectKind(arg, ["scalar"], args[0]!.span, "`per_sample`")) return undefined;
      if (!readsTaskGradient(arg, [])) {
        return this.report(error("MMB008", "`per_sample` evaluates a gradient statistic for each sample, but this reads no gradient", args[0]!.span, { help: "e.g. `per_sample(norm(grad(encoder[m].last)))`; per-sample metrics need no wrapper: `prob(out, y)`" }));
      }
      return this.make({ op: "perSample", arg }, "batch", [arg]);
    }
    if (fn === "detach") {
      if (!arity(1, "detach(x)")) return undefined;
      const arg = this.expr(args[0]!.value, env);
      return arg && this.make({ op: "detach", arg }, arg.kind, [arg], { secondOrder: false });
    }
    if (fn === "other") return this.report(error("MMB009", "`other(m)` is a modality index: use it inside brackets", e.span, { help: "e.g. `s[other(m)]`" }));
    if (fn === "normal") return this.report(error("MMB007", "`normal(...)` can only follow `noise grad(G) ~`", e.span, { help: "e.g. `noise grad(encoder[m]) ~ normal(0, 0.01)`" }));
    if (fn === "lr") return this.report(error("MMB018", "`lr(G)` can only be scaled: `scale lr(G) by factor`", e.span, { help: "e.g. `scale lr(encoder[m]) by 0.5`" }));
    const guess = nearest(fn, builtinFunctions);
    return this.report(error("MMB006", `unknown function \`${fn}\``, e.callee.span, { label: "not a built-in function", help: guess ? `did you mean \`${guess}\`?` : "see the function list in README.md" }));
  }

  /** The mean over a gradient's elements: `mean(grad(G))`, `mean(abs(grad(G)))`. */
  private gradMean(value: RExpr): RExpr {
    const absolute = value.op === "unary" && value.fn === "abs";
    return this.make({ op: "gradStat", stat: absolute ? "meanAbs" : "mean", arg: absolute ? value.arg : value }, "scalar", [value]);
  }

  /** `sum(k, e)`, `sum(k != m, e)`, `sum(batch, e)`; with two plain values, `max(a, b)` is elementwise. */
  private reduction(e: Extract<Expr, { kind: "Call" }>, fn: "sum" | "mean" | "max" | "min", env: Env): RExpr | undefined {
    const usage = `${fn}(k, x[k])\`, \`${fn}(k != m, x[k])\` or \`${fn}(batch, x)`;
    if (fn === "mean" && e.args.length === 1 && !e.args[0]!.name) {
      const value = this.expr(e.args[0]!.value, env);
      if (value?.kind === "grad") return this.gradMean(value);
      if (value) this.report(error("MMB007", "`mean` of one argument takes a gradient", e.span, { help: `write \`${usage}\`` }));
      return undefined;
    }
    if (e.args.length !== 2 || e.args.some((a) => a.name)) {
      return this.report(error("MMB007", `\`${fn}\` takes a range and a value`, e.span, { help: `write \`${usage}\`` }));
    }
    const [binder, body] = [e.args[0]!.value, e.args[1]!.value];
    if (binder.kind === "Name" && binder.name === "batch") {
      if (fn === "max" || fn === "min") return this.report(error("MMB007", `\`${fn}\` over the batch is not supported`, binder.span, { help: "use `sum(batch, ...)` or `mean(batch, ...)`" }));
      const value = this.expr(body, env);
      if (!value) return undefined;
      if (value.kind === "grad") return this.gradMean(value);
      if (!this.expectKind(value, ["batch", "batchBool"], body.span, `\`${fn}(batch, ...)\``)) return undefined;
      return this.make({ op: "reduceBatch", fn, body: value }, "scalar", [value]);
    }
    let variable: string | undefined;
    let exclude: IndexRef | undefined;
    const isFreeName = (x: Expr) => x.kind === "Name" && !this.definitions.has(x.name) && !this.params.has(x.name) && !this.learnables.has(x.name) && !this.modalitySpans.has(x.name) && !reservedValues.includes(x.name) && x.name !== this.targetName;
    if (isFreeName(binder) && !env.bound.has((binder as { name: string }).name)) variable = (binder as { name: string }).name;
    else if (binder.kind === "Binary" && binder.op === "!=" && isFreeName(binder.left)) {
      variable = (binder.left as { name: string }).name;
      exclude = this.index(binder.right, env);
      if (!exclude) return undefined;
    }
    if (variable === undefined) {
      if (fn === "sum" || fn === "mean") {
        const value = this.expr(binder, env);
        if (value?.kind === "grad" && fn === "mean") return this.report(error("MMB007", "`mean` of a gradient takes one argument", e.span, { help: "write `mean(abs(grad(G)))`" }));
        return this.report(error("MMB007", `the first argument of \`${fn}\` must be an index (\`k\`, \`k != m\`) or \`batch\``, binder.span, { help: `write \`${usage}\`` }));
      }
      const left = this.expr(binder, env);
      const right = this.expr(body, env);
      if (!left || !right) return undefined;
      if (!this.expectKind(left, ["scalar", "batch"], binder.span, `\`${fn}\``) || !this.expectKind(right, ["scalar", "batch"], body.span, `\`${fn}\``)) return undefined;
      return this.make({ op: "binary", fn, left, right }, left.kind === "batch" || right.kind === "batch" ? "batch" : "scalar", [left, right]);
    }
    const inner: Env = { ...env, bound: new Set([...env.bound, variable]) };
    const value = this.expr(body, inner);
    if (!value) return undefined;
    if (!this.expectKind(value, ["scalar", "batch"], body.span, `\`${fn}\` over modalities`)) return undefined;
    return this.make({ op: "reduceModalities", fn, variable, ...(exclude ? { exclude } : {}), body: value }, value.kind, [value]);
  }
}

/** How a value kind reads in a message. */
export function describeKind(kind: ValueKind): string {
  return {
    scalar: "a number",
    bool: "a condition",
    batch: "one number per sample",
    batchBool: "one condition per sample",
    logits: "a head's outputs",
    features: "features",
    grad: "a gradient",
    label: "the target",
    prototypes: "class means",
  }[kind];
}

function kindHelp(kind: ValueKind): string {
  switch (kind) {
    case "grad":
      return "reduce the gradient to a number: `norm(grad(...))`, `std(grad(...))`";
    case "logits":
      return "score the outputs: `acc(out, y)`, `prob(out, y)`, `loss(out, y)`";
    case "batch":
      return "reduce over the batch: `sum(batch, ...)`";
    case "label":
      return "use the target inside a metric, e.g. `acc(out, y)`";
    default:
      return "see the kinds of values in README.md";
  }
}

