/**
 * Bounds of a number the spec gives: a component's option, or a builtin's constant argument. One
 * module for the compiler, which checks a spec's numbers against them, and the runtime, which
 * checks a `--set` of a trainer run as it is (`mmb run`); it imports nothing, as
 * parameter-groups.ts does not.
 */
export interface Range {
  min?: number;
  max?: number;
  /** The bound itself is excluded. */
  minOpen?: boolean;
  maxOpen?: boolean;
  /** Only whole numbers (a count). */
  integer?: boolean;
}

export function inRange(value: number, range: Range): boolean {
  if (!Number.isFinite(value)) return false;
  if (range.integer && !Number.isInteger(value)) return false;
  if (range.min !== undefined && (range.minOpen ? value <= range.min : value < range.min)) return false;
  if (range.max !== undefined && (range.maxOpen ? value >= range.max : value > range.max)) return false;
  return true;
}

/**
 * A `param` given to a call as a constant argument (`ema(x, beta)`): the range that call takes
 * there. `mmb train --set` checks the value with the spec (MMB019); a generated trainer holds
 * these so that its own `--set` checks it too.
 */
export interface ParamRange {
  range: Range;
  /** The range in words (`in [0, 1)`), as the compiler's diagnostics write it. */
  text: string;
  /** What takes the param: "`ema`'s beta". */
  use: string;
  /** The spec line of the call. */
  line: number;
}
