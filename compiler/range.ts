/** Bounds of a number the spec gives: a component's option, or a builtin's constant argument. */
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

/** The range in words: "at least 1", "greater than 0", "in [0, 1)". */
export function rangeText(range: Range): string {
  if (range.integer) return `a whole number ${rangeText({ ...range, integer: false })}`.replace(" a finite number", "");
  const { min, max } = range;
  if (min !== undefined && max !== undefined) return `in ${range.minOpen ? "(" : "["}${min}, ${max}${range.maxOpen ? ")" : "]"}`;
  if (min !== undefined) return range.minOpen ? `greater than ${min}` : `at least ${min}`;
  if (max !== undefined) return range.maxOpen ? `less than ${max}` : `at most ${max}`;
  return "a finite number";
}
