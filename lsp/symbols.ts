import { builtin, isReduction, values, type Builtin, type BuiltinValue } from "../compiler/builtins/index.js";
import { auxHeads, dataSources, encoders, fusions, heads, optimizers, schedules, trainSettings, type ComponentSpec, type OptionSpec } from "../compiler/components.js";
import type { Decl, Expr, Ident, Program, Span, Stmt } from "../grammar/ast.js";

/**
 * What each name of a spec stands for, read off its AST: the spec's own declarations (modalities,
 * the target, learnables, stages, params, rule values) with every reference to them, and the
 * builtins, components, options and settings it names. The language server answers hover,
 * definition, references, rename and completion from this index; it is built from the AST alone,
 * so it answers while the spec does not check, and from a partial AST while it does not parse.
 */

export type SymbolKind = "modality" | "target" | "learnable" | "stage" | "param" | "value";

/** A name the spec declares. */
export interface SpecSymbol {
  name: string;
  kind: SymbolKind;
  /** The name where it is declared. */
  span: Span;
  /** The whole declaration or statement, for hover. */
  declaration: Span;
  /** The stage whose rules declare it ("" for the spec's own); params are the whole spec's. */
  stage: string;
  /** `x[m] = ...`: the index variable of a per-modality value or learnable. */
  index?: string;
  /** Every use of the name, the declaration excluded. */
  references: Span[];
}

/** What one occurrence of a name in the spec is. */
export type Occurrence =
  | { kind: "symbol"; span: Span; symbol: SpecSymbol; declaration: boolean }
  | { kind: "builtin"; span: Span; entry: Builtin }
  | { kind: "value"; span: Span; entry: BuiltinValue }
  | { kind: "component"; span: Span; name: string; spec: ComponentSpec; family: ComponentFamily }
  | { kind: "option"; span: Span; name: string; spec: OptionSpec; component: string }
  | { kind: "setting"; span: Span; name: string; spec: OptionSpec };

export type ComponentFamily = "data source" | "encoder" | "fusion" | "head" | "auxiliary head" | "optimizer" | "schedule";

interface ComponentTable {
  family: ComponentFamily;
  entries: Record<string, ComponentSpec>;
}

/** The component tables, by the declaration whose value names one: the index and completion both read them. */
export const tables = {
  data: { family: "data source", entries: dataSources },
  encoder: { family: "encoder", entries: encoders },
  fusion: { family: "fusion", entries: fusions },
  head: { family: "head", entries: heads },
  auxHead: { family: "auxiliary head", entries: auxHeads },
  optimizer: { family: "optimizer", entries: optimizers },
  schedule: { family: "schedule", entries: schedules },
} as const satisfies Record<string, ComponentTable>;

export interface SymbolIndex {
  symbols: SpecSymbol[];
  /** Every occurrence, in source order. */
  occurrences: Occurrence[];
}

/** The innermost occurrence whose span holds the offset (its end included: a cursor just after a name is on it). */
export function occurrenceAt(index: SymbolIndex, offset: number): Occurrence | undefined {
  let found: Occurrence | undefined;
  for (const o of index.occurrences) {
    if (o.span.start <= offset && offset <= o.span.end && (!found || o.span.end - o.span.start < found.span.end - found.span.start)) found = o;
  }
  return found;
}

/** The stage whose body holds the offset ("" outside every stage). */
export function stageAt(program: Program, offset: number): string {
  const stage = program.decls.find((d): d is Extract<Decl, { kind: "StageDecl" }> => d.kind === "StageDecl" && d.span.start <= offset && offset <= d.span.end);
  return stage?.name.name ?? "";
}

/** The symbols a name can mean in a stage: its own rule values, then the spec's. */
export function visibleSymbols(index: SymbolIndex, stage: string): SpecSymbol[] {
  const seen = new Set<string>();
  const own = index.symbols.filter((s) => s.kind === "value" && s.stage === stage);
  const rest = index.symbols.filter((s) => s.kind !== "value" || s.stage === "");
  return [...own, ...rest].filter((s) => !seen.has(s.name) && (seen.add(s.name), true));
}

export function indexSymbols(program: Program): SymbolIndex {
  const symbols = declarations(program);
  const occurrences: Occurrence[] = symbols.map((symbol) => ({ kind: "symbol", span: symbol.span, symbol, declaration: true }));
  const index: SymbolIndex = { symbols, occurrences };
  const walker = new Walker(index);
  for (const decl of program.decls) walker.decl(decl, "");
  occurrences.sort((a, b) => a.span.start - b.span.start);
  return index;
}

/** Pass one: every declaration, so that uses before a definition (rule values are ordered by their reads) resolve. */
function declarations(program: Program): SpecSymbol[] {
  const symbols: SpecSymbol[] = [];
  const declare = (name: Ident, kind: SymbolKind, declaration: Span, stage: string, index?: Ident) => {
    if (name.name === "") return;
    symbols.push({ name: name.name, kind, span: name.span, declaration, stage, references: [], ...(index ? { index: index.name } : {}) });
  };
  const statements = (body: Stmt[], stage: string) => {
    for (const stmt of body) {
      if (stmt.kind === "Param") declare(stmt.name, "param", stmt.span, "");
      else if (stmt.kind === "Define") declare(stmt.target.name, "value", stmt.span, stage, stmt.target.index);
      else if (stmt.kind === "When") statements(stmt.body, stage);
    }
  };
  const decls = (list: Decl[], stage: string) => {
    for (const decl of list) {
      if (decl.kind === "ModalityDecl") declare(decl.name, "modality", decl.span, "");
      else if (decl.kind === "TargetDecl") declare(decl.name, "target", decl.span, "");
      else if (decl.kind === "LearnableDecl") declare(decl.target.name, "learnable", decl.span, "", decl.target.index);
      else if (decl.kind === "StageDecl") {
        declare(decl.name, "stage", decl.span, "");
        decls(decl.body, decl.name.name);
      } else if (decl.kind === "BalanceBlock" || decl.kind === "EpochBlock") statements(decl.body, stage);
    }
  };
  decls(program.decls, "");
  return symbols;
}

interface Scope {
  stage: string;
  /** Index variables bound here (`m` of `x[m] = ...`, `k` of `sum(k, ...)`): not names of the spec. */
  bound: ReadonlySet<string>;
  /** The table calls are looked up in first (`mlp(...)` after `encoder audio =`). */
  table?: ComponentTable;
}

/** Pass two: every use of a name. */
class Walker {
  constructor(private readonly index: SymbolIndex) {}

  decl(decl: Decl, stage: string): void {
    const scope = (table?: ComponentTable, bound: string[] = []): Scope => ({ stage, bound: new Set(bound), ...(table ? { table } : {}) });
    switch (decl.kind) {
      case "DataDecl":
        return this.expr(decl.value, scope(tables.data));
      case "ModalityDecl":
      case "TargetDecl":
        // The type (`float[64]`, `class(6)`) names no symbol.
        return;
      case "EncoderDecl":
        if (decl.target) this.use(decl.target.name, decl.target.span, scope());
        return this.expr(decl.value, scope(tables.encoder, decl.index ? [decl.index.name] : []));
      case "HeadDecl":
        return this.expr(decl.value, scope(tables.auxHead, [decl.index.name]));
      case "FusionDecl":
        this.expr(decl.value, scope(tables.fusion));
        return this.expr(decl.head, scope(tables.head));
      case "LossDecl":
        return this.expr(decl.value, scope(undefined, decl.index ? [decl.index.name] : []));
      case "OptimizerDecl":
        return this.expr(decl.value, scope(tables.optimizer));
      case "ScheduleDecl":
        return this.expr(decl.value, scope(tables.schedule));
      case "PredictDecl":
        return this.expr(decl.value, scope());
      case "TrainDecl":
        for (const setting of decl.settings) {
          const spec = trainSettings[setting.key.name];
          if (spec) this.index.occurrences.push({ kind: "setting", span: setting.key.span, name: setting.key.name, spec });
        }
        return;
      case "LearnableDecl":
        return this.expr(decl.value, scope());
      case "FreezeDecl":
        for (const group of decl.groups) this.expr(group, scope());
        return;
      case "StageDecl":
        for (const inner of decl.body) this.decl(inner, decl.name.name);
        return;
      case "BalanceBlock":
      case "EpochBlock":
        for (const stmt of decl.body) this.stmt(stmt, scope());
        return;
      case "ModelDecl":
        return;
    }
  }

  private stmt(stmt: Stmt, scope: Scope): void {
    switch (stmt.kind) {
      case "Param":
      case "AddLoss":
        return this.expr(stmt.value, scope);
      case "Define":
        return this.expr(stmt.value, stmt.target.index ? { ...scope, bound: new Set([...scope.bound, stmt.target.index.name]) } : scope);
      case "When":
        this.expr(stmt.condition, scope);
        for (const inner of stmt.body) this.stmt(inner, scope);
        return;
      case "Scale":
        this.expr(stmt.target, scope);
        return this.expr(stmt.factor, scope);
      case "Noise":
        this.expr(stmt.target, scope);
        return this.expr(stmt.distribution, scope);
      case "Replace":
      case "Set":
        this.expr(stmt.target, scope);
        return this.expr(stmt.value, scope);
      case "Drop":
        this.expr(stmt.target, scope);
        return this.expr(stmt.probability, scope);
      case "Minimize":
        this.expr(stmt.value, scope);
        this.expr(stmt.group, scope);
        return this.expr(stmt.optimizer, { ...scope, table: tables.optimizer });
    }
  }

  private expr(e: Expr, scope: Scope): void {
    switch (e.kind) {
      case "Name":
        return this.use(e.name, e.span, scope);
      case "Index":
        this.expr(e.base, scope);
        for (const i of e.indices) this.expr(i, scope);
        return;
      case "Member":
        // `encoder[m].conv.weight`, `warmup.z[m]`: the object may name something, a property never does.
        return this.expr(e.object, scope);
      case "Call":
        return this.call(e, scope);
      case "List":
        for (const item of e.items) this.expr(item, scope);
        return;
      case "Unary":
        return this.expr(e.operand, scope);
      case "Binary":
        this.expr(e.left, scope);
        return this.expr(e.right, scope);
      case "If":
        this.expr(e.condition, scope);
        this.expr(e.then, scope);
        return this.expr(e.otherwise, scope);
      case "Number":
      case "String":
      case "Missing":
        return;
    }
  }

  private call(e: Extract<Expr, { kind: "Call" }>, scope: Scope): void {
    const callee = e.callee.kind === "Name" ? e.callee.name : undefined;
    const component = callee !== undefined ? scope.table?.entries[callee] : undefined;
    if (callee !== undefined && component && scope.table) {
      this.index.occurrences.push({ kind: "component", span: e.callee.span, name: callee, spec: component, family: scope.table.family });
      for (const arg of e.args) {
        const option = arg.name ? component.options[arg.name.name] : undefined;
        if (arg.name && option) this.index.occurrences.push({ kind: "option", span: arg.name.span, name: arg.name.name, spec: option, component: callee });
        // Option values are numbers, lists and strings; a name there is a modality (`dominant: audio`).
        if (arg.value.kind === "Name" && option?.type === "modality") this.use(arg.value.name, arg.value.span, scope);
        else if (arg.value.kind === "Call") this.expr(arg.value, scope);
      }
      return;
    }
    const entry = callee !== undefined ? builtin(callee) : undefined;
    if (entry) this.index.occurrences.push({ kind: "builtin", span: e.callee.span, entry });
    else this.expr(e.callee, scope);
    // A reduction's first argument binds its index (`k`, `k != m`) in the arguments after it.
    let inner = scope;
    const binder = entry && isReduction(entry) ? e.args[0]?.value : undefined;
    const bound = binder?.kind === "Name" ? binder : binder?.kind === "Binary" && binder.left.kind === "Name" ? binder.left : undefined;
    if (bound && bound.name !== "batch") inner = { ...scope, bound: new Set([...scope.bound, bound.name]) };
    for (const [i, arg] of e.args.entries()) {
      if (i === 0 && bound) {
        if (binder?.kind === "Binary") this.expr(binder.right, inner);
        continue;
      }
      this.expr(arg.value, inner);
    }
  }

  private use(name: string, span: Span, scope: Scope): void {
    if (scope.bound.has(name)) return;
    const symbol = this.resolve(name, scope.stage);
    if (symbol) {
      symbol.references.push(span);
      this.index.occurrences.push({ kind: "symbol", span, symbol, declaration: false });
      return;
    }
    const value = values.find((v) => v.name === name);
    if (value) this.index.occurrences.push({ kind: "value", span, entry: value });
  }

  private resolve(name: string, stage: string): SpecSymbol | undefined {
    const candidates = this.index.symbols.filter((s) => s.name === name);
    return candidates.find((s) => s.kind === "value" && s.stage === stage) ?? candidates.find((s) => s.kind !== "value" || s.stage === "");
  }
}
