import math

import numpy as np
import torch

# Evaluation metrics on a whole split, computed on the host in float64 from the model's outputs
# (one download per batch of EVAL_BATCH rows), as runtime/metrics.ts computes them: the same
# keys in the same order, the same sums in the same order. The first key of each result is the
# run's primary metric.


def _metrics_running_sum(values):
    """The sum of float64 `values` added one by one from the first, as a JavaScript loop adds (numpy's sum pairs them)."""
    return float(np.cumsum(values)[-1]) if len(values) else 0.0


def classification_metrics(predicted, labels, classes):
    """Accuracy and macro-F1 (the unweighted mean of per-class F1; a class never predicted nor present counts 0)."""
    predicted = np.asarray(predicted).reshape(-1).astype(np.int64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    hit = predicted == labels
    true_positive = np.bincount(labels[hit], minlength=classes)
    predicted_count = np.bincount(predicted, minlength=classes)
    actual_count = np.bincount(labels, minlength=classes)
    f1 = [0.0 if predicted_count[c] + actual_count[c] == 0 else 2 * int(true_positive[c]) / int(predicted_count[c] + actual_count[c]) for c in range(classes)]
    return {"acc": int(hit.sum()) / max(1, len(labels)), "macro_f1": sum(f1) / classes}


def _metrics_level(values):
    """Rounded to an integer as JavaScript's Math.round does (halves up: −2.5 → −2), then clipped to −3…3."""
    return np.clip(np.floor(values + 0.5), -3, 3)


def regression_metrics(predicted, labels):
    """
    MAE, Pearson's r, and the sentiment-analysis accuracies of CMU-MOSI papers: Acc-2, the sign
    (negative vs non-negative) of prediction and label agreeing, and Acc-7, both rounded and
    clipped to the integers −3…3 agreeing.
    """
    p = np.asarray(predicted, dtype=np.float32).reshape(-1).astype(np.float64)
    y = np.asarray(labels, dtype=np.float32).reshape(-1).astype(np.float64)
    n = len(y)
    absolute = _metrics_running_sum(np.abs(p - y))
    sign = int(((p >= 0) == (y >= 0)).sum())
    seven = int((_metrics_level(p) == _metrics_level(y)).sum())
    mean_p = _metrics_running_sum(p / n)
    mean_y = _metrics_running_sum(y / n)
    covariance = _metrics_running_sum((p - mean_p) * (y - mean_y))
    variance_p = _metrics_running_sum((p - mean_p) ** 2)
    variance_y = _metrics_running_sum((y - mean_y) ** 2)
    pearson = covariance / math.sqrt(variance_p * variance_y) if variance_p > 0 and variance_y > 0 else 0.0
    return {"mae": absolute / max(1, n), "pearson": pearson, "acc2": sign / max(1, n), "acc7": seven / max(1, n)}


def mask_dice(predicted, labels, classes):
    """Dice of predicted and true pixel classes: mean over the classes present in either of 2·|P ∩ T| / (|P| + |T|)."""
    predicted = np.asarray(predicted).reshape(-1).astype(np.int64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    both = np.bincount(labels[predicted == labels], minlength=classes)
    total = np.bincount(predicted, minlength=classes) + np.bincount(labels, minlength=classes)
    present = [c for c in range(classes) if total[c] > 0]
    return sum(2 * int(both[c]) / int(total[c]) for c in present) / max(1, len(present))


@torch.no_grad()
def evaluate(model, spec, split, only=None, predict=None, device="cpu"):
    """
    Metrics of the fused head on a split, or with `only` = m of modality m alone: its auxiliary
    head where the spec has one, else the fused head with the other modalities' features zeroed.
    `predict(forward)`: the output to score instead of `out` (the fused metrics only). The first
    key is the primary metric: accuracy, MAE, or Dice (then pixel accuracy).
    """
    target = spec["target"]
    classes = target["kind"] != "real"
    # Numbers per sample: 1, or a mask's pixels.
    width = int(np.prod(target.get("shape") or [1]))
    aux = bool(spec.get("auxHead"))
    keep = None if only is None or aux else [1 if m == only else 0 for m in range(len(spec["modalities"]))]
    predicted = np.zeros(split.size * width, dtype=np.float32)
    for rows in evaluation_batches(split):
        inputs, labels = batch_tensors(split, rows, device)
        f = Forward(model, inputs, labels, training=False, keep=keep)
        if only is not None:
            output = f.aux(only) if aux else f.out
        else:
            output = predict(f) if predict else f.out
        values = output.argmax(-1) if classes else output.reshape(-1)
        predicted[rows[0] * width : (rows[-1] + 1) * width] = values.reshape(-1).cpu().numpy()
    if target["kind"] == "mask":
        pixels = classification_metrics(predicted, split.labels, target["classes"])
        return {"dice": mask_dice(predicted, split.labels, target["classes"]), "pixel_acc": pixels["acc"]}
    if classes:
        return classification_metrics(predicted, split.labels, target["classes"])
    return regression_metrics(predicted, split.labels)
