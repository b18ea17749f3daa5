/**
 * The catalogue of diagnostic codes, with each code's title. Codes are stable: a code is never
 * reused for another meaning. `docs/diagnostics.md` is generated from this table and the
 * fixtures in `test/fixtures/` (one per code).
 */
export const codes = {
  MMB001: "unexpected character",
  MMB002: "syntax error",
  MMB003: "duplicate declaration",
  MMB004: "missing declaration",
  MMB005: "unknown name",
  MMB006: "unknown function",
  MMB007: "wrong arguments",
  MMB008: "wrong kind of value",
  MMB009: "modality index not bound",
  MMB010: "modality without an encoder",
  MMB011: "unknown component",
  MMB012: "unknown or invalid option",
  MMB013: "invalid modality or target type",
  MMB014: "`other(m)` needs exactly two modalities",
  MMB015: "`contrib[m]` needs a head linear in the features",
  MMB016: "gradients of different shapes",
  MMB017: "cyclic definition",
  MMB018: "invalid action target",
  MMB019: "parameter value is not a number",
  MMB020: "name defined twice",
  MMB021: "condition is not a boolean",
  MMB022: "group minimised by two objectives",
  MMB023: "per-sample value where a scalar is needed",
  MMB024: "encoder does not fit the modality's shape",
  MMB025: "parameter group does not exist",
  MMB026: "unknown parameter on the command line",
  MMB027: "needs a value known before the step",
  MMB028: "`from` needs a file",
  MMB029: "data files and `from` clauses disagree",
  MMB030: "needs at least two modalities",
  MMB031: "modality never read",
  MMB032: "nested too deeply",
  MMB033: "not visible where it is read",
  MMB034: "invalid `every` block",
  MMB035: "invalid stage",
  MMB036: "invalid turns",
  // MMB037 ("not in this target yet") was retired when every construct compiled for torch.
  MMB038: "batch normalisation on one sample",
} as const;

export type DiagnosticCode = keyof typeof codes;
