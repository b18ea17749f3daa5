import type { Span } from "../diagnostics/index.js";

export type { Span };

export interface Ident {
  kind: "Ident";
  name: string;
  span: Span;
}

export type Expr =
  | { kind: "Number"; value: number; text: string; span: Span }
  | { kind: "String"; value: string; span: Span }
  | { kind: "Name"; name: string; span: Span }
  | { kind: "List"; items: Expr[]; span: Span }
  | { kind: "Index"; base: Expr; indices: Expr[]; span: Span }
  | { kind: "Member"; object: Expr; property: Ident; span: Span }
  | { kind: "Call"; callee: Expr; args: Arg[]; span: Span }
  | { kind: "Unary"; op: "-" | "not"; operand: Expr; span: Span }
  | { kind: "Binary"; op: BinaryOp; left: Expr; right: Expr; span: Span }
  | { kind: "If"; condition: Expr; then: Expr; otherwise: Expr; span: Span }
  /** Stands where the parser recovered from an error; the error is already reported. */
  | { kind: "Missing"; span: Span };

export type BinaryOp = "+" | "-" | "*" | "/" | "%" | "^" | "<" | "<=" | ">" | ">=" | "==" | "!=" | "and" | "or";

export interface Arg {
  name?: Ident;
  value: Expr;
  span: Span;
}

/** `name` or `name[m]`. */
export interface IndexedName {
  name: Ident;
  index?: Ident;
  span: Span;
}

export type Decl =
  | { kind: "ModelDecl"; name: Ident; span: Span }
  | { kind: "DataDecl"; value: Expr; span: Span }
  | { kind: "ModalityDecl"; name: Ident; type: Expr; source?: Expr; span: Span }
  | { kind: "TargetDecl"; name: Ident; type: Expr; source?: Expr; span: Span }
  /** `encoder audio = ...` (target set) or `encoder[m] = ...` (index set). */
  | { kind: "EncoderDecl"; target?: Ident; index?: Ident; value: Expr; span: Span }
  | { kind: "HeadDecl"; index: Ident; value: Expr; span: Span }
  | { kind: "FusionDecl"; value: Expr; head: Expr; span: Span }
  /** `loss EXPR`; `loss[m] EXPR`: one loss per modality, which the `turns` setting trains in turn. */
  | { kind: "LossDecl"; index?: Ident; value: Expr; span: Span }
  | { kind: "OptimizerDecl"; value: Expr; span: Span }
  /** `predict EXPR`: the outputs evaluation scores (e.g. unimodal outputs weighted by their entropy), instead of `out`. */
  | { kind: "PredictDecl"; value: Expr; span: Span }
  | { kind: "ScheduleDecl"; value: Expr; span: Span }
  | { kind: "TrainDecl"; settings: { key: Ident; value: Expr }[]; span: Span }
  | { kind: "LearnableDecl"; target: IndexedName; value: Expr; span: Span }
  | { kind: "BalanceBlock"; body: Stmt[]; span: Span }
  /** `stage NAME { ... }`: a training stage (loss, optimizer, schedule, train, balance, every, freeze). */
  | { kind: "StageDecl"; name: Ident; body: Decl[]; span: Span }
  /** `freeze G, ...`: groups a stage does not train. */
  | { kind: "FreezeDecl"; groups: Expr[]; span: Span }
  /** `every epoch { ... }`: rule values and `set`s evaluated at the start of each epoch. */
  | { kind: "EpochBlock"; unit: Ident; body: Stmt[]; span: Span };

export type Stmt =
  | { kind: "Param"; name: Ident; value: Expr; span: Span }
  | { kind: "Define"; target: IndexedName; value: Expr; span: Span }
  | { kind: "When"; condition: Expr; body: Stmt[]; span: Span }
  | { kind: "Scale"; target: Expr; factor: Expr; span: Span }
  | { kind: "Noise"; target: Expr; distribution: Expr; span: Span }
  /** `replace grad(G) by e`: the update gradient of G becomes e, a gradient expression. */
  | { kind: "Replace"; target: Expr; value: Expr; span: Span }
  /** `drop z[m] with p [rescaled]`: in training, each sample's z[m] is zeroed with probability p (the kept ones × 1/(1 − p)). */
  | { kind: "Drop"; target: Expr; probability: Expr; rescaled: boolean; span: Span }
  /** `set w[m] = e`: a learnable's value after the optimiser step. */
  | { kind: "Set"; target: Expr; value: Expr; span: Span }
  | { kind: "AddLoss"; value: Expr; span: Span }
  | { kind: "Minimize"; value: Expr; group: Expr; optimizer: Expr; span: Span };

/** A `#` or `//` comment: its text, from the marker to the end of its line, and where it is. */
export interface Comment {
  text: string;
  span: Span;
}

export interface Program {
  decls: Decl[];
  span: Span;
}
