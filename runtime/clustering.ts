import { Random } from "./random.js";

/**
 * Clustering quality of features against class labels, as re-learning methods measure a
 * modality's learning state (Wei et al., ECCV 2024): each dimension scaled to [-1, 1] (scikit-learn's
 * MinMaxScaler: a constant dimension becomes −1), k-means with k = the classes (k-means++ seeding,
 * Lloyd's iterations until no sample moves, at most 300; the best of `starts` seedings by inertia),
 * then purity: the fraction of samples whose cluster's majority class is their own.
 */
export function kmeansPurity(features: Float32Array, samples: number, dims: number, labels: ArrayLike<number>, classes: number, seed: number, starts = 10): number {
  const x = minMaxScaled(features, samples, dims);
  const random = new Random(seed);
  let best: { inertia: number; assignment: Int32Array } | undefined;
  for (let start = 0; start < starts; start++) {
    const result = lloyd(x, samples, dims, seedCenters(x, samples, dims, classes, random), classes);
    if (!best || result.inertia < best.inertia) best = result;
  }
  return purity(best!.assignment, labels, classes);
}

function minMaxScaled(features: Float32Array, samples: number, dims: number): Float64Array {
  const out = new Float64Array(samples * dims);
  for (let d = 0; d < dims; d++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < samples; i++) {
      const v = features[i * dims + d]!;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const range = hi - lo || 1;
    for (let i = 0; i < samples; i++) out[i * dims + d] = (2 * (features[i * dims + d]! - lo)) / range - 1;
  }
  return out;
}

function squaredDistance(x: Float64Array, i: number, centers: Float64Array, c: number, dims: number): number {
  let sum = 0;
  for (let d = 0; d < dims; d++) sum += (x[i * dims + d]! - centers[c * dims + d]!) ** 2;
  return sum;
}

/** k-means++: the first center a random sample, each next one drawn with probability ∝ its squared distance to the nearest chosen. */
function seedCenters(x: Float64Array, samples: number, dims: number, k: number, random: Random): Float64Array {
  const centers = new Float64Array(k * dims);
  const nearest = new Float64Array(samples).fill(Infinity);
  let chosen = Math.floor(random.uniform() * samples);
  for (let c = 0; c < k; c++) {
    centers.set(x.subarray(chosen * dims, (chosen + 1) * dims), c * dims);
    let total = 0;
    for (let i = 0; i < samples; i++) {
      nearest[i] = Math.min(nearest[i]!, squaredDistance(x, i, centers, c, dims));
      total += nearest[i]!;
    }
    let target = random.uniform() * total;
    chosen = samples - 1;
    for (let i = 0; i < samples; i++) {
      target -= nearest[i]!;
      if (target < 0) {
        chosen = i;
        break;
      }
    }
  }
  return centers;
}

function lloyd(x: Float64Array, samples: number, dims: number, centers: Float64Array, k: number): { inertia: number; assignment: Int32Array } {
  const assignment = new Int32Array(samples).fill(-1);
  let inertia = 0;
  for (let iteration = 0; iteration < 300; iteration++) {
    let moved = 0;
    inertia = 0;
    for (let i = 0; i < samples; i++) {
      let best = 0;
      let bestDistance = Infinity;
      for (let c = 0; c < k; c++) {
        const distance = squaredDistance(x, i, centers, c, dims);
        if (distance < bestDistance) [best, bestDistance] = [c, distance];
      }
      if (assignment[i] !== best) moved++;
      assignment[i] = best;
      inertia += bestDistance;
    }
    if (moved === 0) break;
    // Each center moves to its samples' mean; a center left without samples stays where it is.
    const sums = new Float64Array(k * dims);
    const counts = new Int32Array(k);
    for (let i = 0; i < samples; i++) {
      counts[assignment[i]!]!++;
      for (let d = 0; d < dims; d++) sums[assignment[i]! * dims + d] += x[i * dims + d]!;
    }
    for (let c = 0; c < k; c++) if (counts[c]! > 0) for (let d = 0; d < dims; d++) centers[c * dims + d] = sums[c * dims + d]! / counts[c]!;
  }
  return { inertia, assignment };
}

/** Σ over clusters of its most frequent class's count, over the samples. */
function purity(assignment: Int32Array, labels: ArrayLike<number>, classes: number): number {
  const counts = new Map<number, number[]>();
  assignment.forEach((c, i) => {
    const row = counts.get(c) ?? new Array<number>(classes).fill(0);
    row[labels[i]!]!++;
    counts.set(c, row);
  });
  let majority = 0;
  for (const row of counts.values()) majority += Math.max(...row);
  return majority / Math.max(1, assignment.length);
}
