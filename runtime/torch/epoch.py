import numpy as np
import torch
import torch.nn.functional as F


class EpochContext(RuleContext):
    """
    What an `every epoch` rule can see and do at an epoch's start, as runtime/epoch.ts: the weights
    the last epoch left, whole splits through the model in evaluation mode (`over`, `class_means`,
    `purity`), the run's history, and `set`s made together when the rule has run. The loop runs
    the rule under torch.no_grad(): its values are constants for the epoch's steps.
    """

    def __init__(self, model, data, epoch, step, history, seed, finished=None, initial=None, streams=Random):
        super().__init__(model, step, seed, finished, initial)
        self.data = data
        self.epoch = epoch
        self.history = history
        # A stream of its own: the step rules' draws stay what they are without an epoch rule.
        self.random = StepRandom(seed + 7777777, epoch, streams)

    def _batches(self, split, fn, value):
        """e computed on each evaluation batch of the split, the model in evaluation mode, with the batch's target."""
        samples = getattr(self.data, split)
        if samples.size == 0:
            raise ValueError(f"{fn}({split}, ...): the {split} split is empty; give the data a {split} fraction")
        for rows in evaluation_batches(samples):
            inputs, target = batch_tensors(samples, rows, self.device)
            yield value(Forward(self.model, inputs, target, training=False)), target

    def over(self, split, value):
        """`over(split, e)`: the mean of the per-sample value e over every sample of the split."""
        total = sum_of([torch.sum(e.float()) for e, _ in self._batches(split, "over", value)])
        return total / getattr(self.data, split).size

    def class_means(self, split, value):
        """`class_means(split, z[m])`: each class's mean of the features over the split (zeros for a class without samples)."""
        classes = self.spec["target"]["classes"]
        sums = None
        for z, target in self._batches(split, "class_means", value):
            part = F.one_hot(target.reshape(-1).long(), classes).float().T @ z.reshape(z.shape[0], -1)
            sums = part if sums is None else sums + part
        counts = np.bincount(getattr(self.data, split).labels.astype(np.int64), minlength=classes).astype(np.float32)
        return sums / torch.clamp(torch.from_numpy(counts).to(sums.device).reshape(-1, 1), min=1)

    def purity(self, split, value):
        """`purity(split, z[m])`: k-means purity of the split's features against its classes (kmeans_purity)."""
        samples = getattr(self.data, split)
        features = torch.cat([z.reshape(z.shape[0], -1) for z, _ in self._batches(split, "purity", value)]).cpu().numpy()
        # Seeded by the run and the epoch: a resumed run clusters as the uninterrupted one did.
        seed = (self.seed * 1000003 + self.epoch * 7919 + 31) % 2147483647
        return torch.tensor(kmeans_purity(features, samples.labels, self.spec["target"]["classes"], seed), device=self.device)


def kmeans_purity(features, labels, classes, seed, starts=10):
    """
    Clustering quality of features against class labels, as runtime/clustering.ts computes it:
    each dimension scaled to [-1, 1] (a constant one becomes −1), k-means with k = the classes
    (k-means++ seeding from Random(seed), Lloyd's iterations until no sample moves, at most 300;
    the best of `starts` seedings by inertia), then the fraction of samples whose cluster's
    majority class is their own. Vectorised with numpy in float64: sums may round otherwise than
    the JavaScript loops, which can move a tie, rarely.
    """
    x = features.astype(np.float64)
    lo, hi = x.min(0), x.max(0)
    span = np.where(hi - lo == 0, 1, hi - lo)
    x = 2 * (x - lo) / span - 1
    random = Random(seed)
    best = None
    for _ in range(starts):
        inertia, assignment = _kmeans_lloyd(x, _kmeans_seed(x, classes, random), classes)
        if best is None or inertia < best[0]:
            best = (inertia, assignment)
    assignment = best[1]
    labels = np.asarray(labels).astype(np.int64)
    majority = sum(np.bincount(labels[assignment == c], minlength=classes).max() for c in np.unique(assignment))
    return majority / max(1, len(assignment))


def _kmeans_seed(x, k, random):
    """k-means++: the first center a random sample, each next drawn with probability ∝ its squared distance to the nearest chosen."""
    samples = x.shape[0]
    centers = np.zeros((k, x.shape[1]))
    nearest = np.full(samples, np.inf)
    chosen = int(random.uniform() * samples)
    for c in range(k):
        centers[c] = x[chosen]
        nearest = np.minimum(nearest, ((x - centers[c]) ** 2).sum(1))
        target = random.uniform() * nearest.sum()
        below = np.nonzero(target - np.cumsum(nearest) < 0)[0]
        chosen = int(below[0]) if len(below) else samples - 1
    return centers


def _kmeans_lloyd(x, centers, k):
    assignment = np.full(x.shape[0], -1)
    inertia = 0.0
    for _ in range(300):
        distances = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(2)
        following = distances.argmin(1)
        moved = int((following != assignment).sum())
        assignment = following
        inertia = float(distances[np.arange(x.shape[0]), assignment].sum())
        if moved == 0:
            break
        # Each center moves to its samples' mean; a center left without samples stays where it is.
        for c in range(k):
            members = assignment == c
            if members.any():
                centers[c] = x[members].mean(0)
    return inertia, assignment
