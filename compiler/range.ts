import type { Range } from "../runtime/range.js";

/** The range in words: "at least 1", "greater than 0", "in [0, 1)". */
export function rangeText(range: Range): string {
  if (range.integer) return `a whole number ${rangeText({ ...range, integer: false })}`.replace(" a finite number", "");
  const { min, max } = range;
  if (min !== undefined && max !== undefined) return `in ${range.minOpen ? "(" : "["}${min}, ${max}${range.maxOpen ? ")" : "]"}`;
  if (min !== undefined) return range.minOpen ? `greater than ${min}` : `at least ${min}`;
  if (max !== undefined) return range.maxOpen ? `less than ${max}` : `at most ${max}`;
  return "a finite number";
}
