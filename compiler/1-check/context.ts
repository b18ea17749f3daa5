import type { Stmt } from "../../grammar/ast.js";
import { nearest, type Diagnostic, type SourceText, type Span, error } from "../../diagnostics/index.js";
import type { ParamRange } from "../../runtime/range.js";
import type { Component, FusionIR, LearnableIR, ModalityIR, RExpr, RNode, RuleValue, ValueKind } from "../ir.js";

/** Where an expression is checked: the index variables in scope and what its reads are recorded in. */
export interface Env {
  /** Index variables in scope (`m` in `x[m] = ...`, `k` in `sum(k, ...)`). */
  bound: Set<string>;
  /** In actions, unbound index variables become loops over the modalities. */
  loops?: Set<string>;
  /** Names of rule values this expression reads, for cycle detection. */
  reads?: Map<string, Span>;
  /** Inside `prev(...)`: reads are of the last step, not dependencies of this one. */
  underHistory?: boolean;
  /** In an `every epoch` rule: no batch, no gradients; a split's outputs only inside `over`. */
  epoch?: boolean;
  /** Inside `over(split, ...)`: the model's outputs on that split's samples. */
  split?: "train" | "valid";
}

/** A rule value `x = e` or `x[m] = e`, checked once, on first use. */
export interface Definition {
  name: string;
  perModality: boolean;
  /** `step`: of the balance block, once per step; `epoch`: of an `every epoch` block. */
  scope: "step" | "epoch";
  stmt: Extract<Stmt, { kind: "Define" }>;
  checked?: RExpr | undefined;
  state?: "checking" | "done";
  reads: Map<string, Span>;
}

/**
 * What the checker knows while it walks a spec: the symbol tables each pass fills in, and the
 * diagnostics. Each file of this folder is a set of functions over it, one concern per file.
 */
export class CheckContext {
  readonly diagnostics: Diagnostic[] = [];
  readonly modalities: ModalityIR[] = [];
  readonly modalitySpans = new Map<string, Span>();
  targetName = "";
  targetKind: "class" | "real" | "mask" = "class";
  readonly params = new Map<string, { value: number; span: Span }>();
  /** Each param given to a call as a constant argument, with the range the call takes there. */
  readonly paramRanges = new Map<string, ParamRange[]>();
  readonly definitions = new Map<string, Definition>();
  readonly learnables = new Map<string, LearnableIR & { span: Span }>();
  readonly encoders: Component[] = [];
  fusion?: Component;
  fuse?: FusionIR;
  head?: Component;
  auxHead?: Component;
  /** Slots of stateful calls (history, class means), numbered in spec order. */
  historyCount = 0;
  /** Reads under `prev` of definitions not yet checked, taken as numbers: confirmed after all are checked. */
  readonly lastStepReads: { definition: Definition; span: Span }[] = [];
  /** Modalities the fusion never reads (MMB031): no unimodal metric is reported for them. */
  readonly unread: string[] = [];
  /** Definitions (by their `reads`) already given an MMB033, which each gets once. */
  readonly invisibleReported = new WeakSet<object>();
  /** The spec's stages in order, and the one being checked: `NAME.z[m]` reads an earlier one's weights. */
  stages: string[] = [];
  stage?: number;
  /** With `loss[m]` and `turns`: the index naming the modality whose turn it is, bound in the step rules. */
  turn?: string;
  /** Groups with their own `minimize` objective, for MMB022. */
  readonly minimized = new Map<string, Span>();

  constructor(
    readonly source: SourceText,
    /** `param` values from the command line (`--set`), which replace the spec's. */
    readonly overrides: Readonly<Record<string, number>> = {},
  ) {}

  /** Records a diagnostic; returns undefined, so that a failed check reads `return cx.report(...)`. */
  report(diagnostic: Diagnostic): undefined {
    this.diagnostics.push(diagnostic);
    return undefined;
  }

  /** The rule values checked so far, for walks through definitions (`dependence`). */
  checkedValues(): RuleValue[] {
    return [...this.definitions.values()].flatMap((d) => (d.checked ? [{ name: d.name, value: d.checked, line: 0, text: "" }] : []));
  }

  line(span: Span): number {
    return this.source.position(span.start).line;
  }

  text(span: Span): string {
    return this.source.slice(span);
  }

  unknownName(name: string, span: Span, candidates: Iterable<string>, what: string): undefined {
    const guess = nearest(name, candidates);
    return this.report(error("MMB005", `unknown ${what} \`${name}\``, span, {
      label: "not declared",
      help: guess ? `did you mean \`${guess}\`?` : `declare it before use`,
    }));
  }
}

/**
 * Completes a fresh node literal into a typed expression, in place: spreading the many node shapes
 * into new objects took a third of the checker's time on long specs. By default a node is a host
 * value when all its children are, and second order when any child is.
 */
export function make(node: RNode, kind: ValueKind, children: RExpr[], extra: { host?: boolean; secondOrder?: boolean } = {}): RExpr {
  const typed = node as RExpr;
  typed.kind = kind;
  typed.host = extra.host ?? (children.length > 0 && children.every((c) => c.host));
  typed.secondOrder = extra.secondOrder ?? children.some((c) => c.secondOrder);
  return typed;
}
