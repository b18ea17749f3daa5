import hashlib
import json

import numpy as np
import torch

# Data: the .npz that `mmb data export` writes, which holds the samples the tfjs trainer reads,
# split for split and row for row (cli/data-export.ts). Entries (numpy keys): `<split>/<modality>`
# (float32, [n, *shape]) and `<split>/<target>` (float32, [n] or [n, *mask shape]; class indices)
# for split in train, valid, test; `classes` (unicode, the class names) where the data names
# them; `meta` (uint8, UTF-8 JSON). The file is checked against the spec before any training: bad
# data is a DataError naming the file, the entry, what was expected and what was found.

# Samples per forward pass when a whole split is evaluated (runtime/batches.ts, `evalBatch`).
EVAL_BATCH = 256

DATA_SPLITS = ("train", "valid", "test")


class DataError(Exception):
    """Bad data: the file, the field (an entry of the .npz), what was expected and what was found."""

    def __init__(self, file, field, expected, found):
        super().__init__(f"{file}: {field}: expected {expected}, found {found}")
        self.file = file
        self.field = field
        self.expected = expected
        self.found = found


class DataSplit:
    """A split held in memory: one float32 array per modality ([size, *shape], in spec order), and the labels."""

    def __init__(self, inputs, labels, size):
        self.inputs = inputs
        self.labels = labels
        self.size = size


class Dataset:
    """The train, valid and test splits, the class names (or None), and where the data came from."""

    def __init__(self, train, valid, test, classes, description, meta, sha256):
        self.train = train
        self.valid = valid
        self.test = test
        self.classes = classes
        self.description = description
        self.meta = meta
        # What the samples are (`samples_sha256`), for a run's origin.
        self.sha256 = sha256


def _data_get(value, key, default=None):
    """A field of the spec: a dict (the spec as JSON) or an object with attributes."""
    if isinstance(value, dict):
        return value.get(key, default)
    return getattr(value, key, default)


def _data_number(value):
    """A number as the tfjs runtime's messages write it: 3, 0.5, NaN, Infinity."""
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return str(int(value)) if value.is_integer() else repr(value)


def _data_shape(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _data_axes_hint(stored, declared):
    """
    Where a sample's axes are the declared ones in another order (frames stored as [H, W, C] for
    float[C, H, W]), what to do about it, as the TypeScript loader says it (runtime/data/files.ts).
    """
    stored, declared = tuple(stored), tuple(declared)
    if len(declared) <= 1 or stored == declared or len(stored) != len(declared) or sorted(stored) != sorted(declared):
        return ""
    channels = " (channels last?)" if stored[-1] == declared[0] else ""
    return f"; the same axes in another order{channels}: store the samples as [N, {', '.join(str(d) for d in declared)}] (e.g. numpy.transpose)"


def _data_names(names):
    names = list(names)
    return ", ".join(names) if names else "none"


def _data_read(file):
    """Every array of the archive, read whole; a file numpy cannot read is a DataError, not a raw exception."""
    try:
        archive = np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(file, "file", "a readable .npz file (`mmb data export SPEC -o FILE` writes one)", "no such file") from None
    except OSError as e:
        raise DataError(file, "file", "a readable .npz file", f"{type(e).__name__}: {e.strerror or e}") from e
    except Exception as e:
        raise DataError(file, "archive", "a well-formed .npz (zip) file, as `mmb data export` writes", f"{type(e).__name__}: {e}") from e
    if not hasattr(archive, "files"):
        raise DataError(file, "archive", "a .npz (zip) file of arrays, as `mmb data export` writes", f"a single array of shape {_data_shape(np.shape(archive))}")
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except Exception as e:
                raise DataError(file, key, "a readable .npy array", f"{type(e).__name__}: {e}") from e
    return arrays


def _data_meta(file, arrays):
    if "meta" not in arrays:
        raise DataError(file, "meta", "an entry meta (the JSON that `mmb data export` writes)", f"no such entry; the file has: {_data_names(sorted(arrays))}")
    raw = arrays["meta"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise DataError(file, "meta", "a 1-D uint8 array (UTF-8 JSON)", f"{raw.dtype.str} of shape {_data_shape(raw.shape)}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(file, "meta", "UTF-8 JSON", f"{type(e).__name__}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != "mmb-data":
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(file, "meta", 'format "mmb-data" (a file that `mmb data export` wrote)', json.dumps(found))
    if meta.get("version") != 1:
        raise DataError(file, "meta", "version 1 (this runtime reads version 1)", json.dumps(meta.get("version")))
    for key, kind in (("modalities", list), ("target", dict), ("splits", dict)):
        if not isinstance(meta.get(key), kind):
            raise DataError(file, "meta", f"a field {key} ({'a list' if kind is list else 'an object'})", json.dumps(meta.get(key)))
    if not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in meta["modalities"]):
        raise DataError(file, "meta", "modalities as [{name, shape}, ...]", json.dumps(meta["modalities"])[:80])
    return meta


def load_dataset(path, spec):
    """
    The .npz that `mmb data export` wrote, checked against `spec` (its `modalities` [{name, shape}]
    and `target` {name, kind, classes, names?, shape?}): every split's arrays, float32, in the
    spec's modality order, with the samples and labels exactly as the tfjs trainer reads them.
    """
    file = str(path)
    modalities = [(str(_data_get(m, "name")), tuple(int(d) for d in _data_get(m, "shape"))) for m in _data_get(spec, "modalities")]
    target = _data_get(spec, "target")
    target_name = str(_data_get(target, "name"))
    kind = str(_data_get(target, "kind"))
    classes = int(_data_get(target, "classes", 0) or 0)
    mask = tuple(int(d) for d in (_data_get(target, "shape") or ()))
    declared = _data_get(target, "names")
    declared = [str(n) for n in declared] if declared is not None else None
    names = [name for name, _ in modalities]

    arrays = _data_read(file)
    meta = _data_meta(file, arrays)
    meta_modalities = [m["name"] for m in meta["modalities"]]
    meta_target = meta["target"]
    splits = meta["splits"]

    # The file and the spec must hold the same modalities and target; a modality only the file
    # has is not dropped quietly (the spec may have meant it), nor one only the spec has.
    for other in meta_modalities:
        if other not in names:
            raise DataError(file, f"train/{other}", f"the spec's modalities only ({_data_names(names)})", f"a modality {other} that the spec does not declare")
    if meta_target.get("name") != target_name:
        raise DataError(file, f"train/{target_name}", f"the labels of the spec's target {target_name}", f"no such entry; the file's target is {meta_target.get('name')}")
    if meta_target.get("kind") != kind:
        raise DataError(file, f"meta: target {target_name}", f"a {kind} target (the spec's)", f"a {meta_target.get('kind')} target")
    if kind != "real" and int(meta_target.get("classes", 0)) != classes:
        raise DataError(file, f"meta: target {target_name}", f"{classes} classes (the spec's)", f"{meta_target.get('classes')}")
    sizes = {}
    for split in DATA_SPLITS:
        size = splits.get(split)
        if not isinstance(size, int) or size < 1:
            raise DataError(file, f"{split} split", "at least one sample", "none" if size in (0, None) else json.dumps(size))
        sizes[split] = size

    expected = {"meta", "classes"} | {f"{s}/{n}" for s in DATA_SPLITS for n in names + [target_name]}
    for key in sorted(arrays):
        if key not in expected:
            split, _, name = key.partition("/")
            if split in DATA_SPLITS and name:
                found = f"a modality {name} that the spec does not declare" if name in meta_modalities else f"an entry {key} that the spec does not read"
                raise DataError(file, key, f"the spec's modalities ({_data_names(names)}) and target {target_name} only", found)
            raise DataError(file, key, "only meta, classes and <split>/<modality or target> entries", f"an entry {key} that mmb does not write")

    def entry(key, shape, what):
        if key not in arrays:
            raise DataError(file, key, f"{what}: float32 of shape {_data_shape(shape)}", f"no such entry; the file has: {_data_names(sorted(arrays))}")
        values = arrays[key]
        if values.dtype != np.dtype("<f4"):
            raise DataError(file, key, f"{what}: float32 ('<f4')", f"{values.dtype.str}")
        if tuple(values.shape) != tuple(shape):
            raise DataError(file, key, f"{what}: shape {_data_shape(shape)}", _data_shape(values.shape) + _data_axes_hint(values.shape[1:], shape[1:]))
        return values

    loaded = {}
    for split in DATA_SPLITS:
        n = sizes[split]
        inputs = []
        for name, shape in modalities:
            values = entry(f"{split}/{name}", (n,) + shape, f"{n} samples of the spec's modality {name}, float[{', '.join(str(d) for d in shape)}]")
            finite = np.isfinite(values)
            if not finite.all():
                bad = int(np.flatnonzero(~finite.reshape(-1))[0])
                width = int(np.prod(shape, dtype=np.int64))
                raise DataError(file, f"{split}/{name}", "finite numbers", f"{_data_number(values.reshape(-1)[bad])} in sample {bad // width}")
            inputs.append(values)
        labels = entry(f"{split}/{target_name}", (n,) + mask, f"{n} labels of the spec's target {target_name}")
        flat = labels.reshape(-1)
        width = int(np.prod(mask, dtype=np.int64)) if mask else 1
        if kind == "real":
            ok = np.isfinite(flat)
            want = "a finite number"
        else:
            ok = np.isfinite(flat) & (flat >= 0) & (flat < classes) & (np.floor(flat) == flat)
            want = f"a class in 0..{classes - 1}"
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise DataError(file, f"{split}/{target_name}", want, f"{_data_number(flat[bad])} in sample {bad // width}")
        loaded[split] = DataSplit(inputs, labels, n)

    class_names = declared
    if "classes" in arrays:
        stored = arrays["classes"]
        if stored.dtype.kind != "U" or stored.ndim != 1:
            raise DataError(file, "classes", "a 1-D array of class names (numpy unicode, '<U…')", f"{stored.dtype.str} of shape {_data_shape(stored.shape)}")
        stored = [str(n) for n in stored.tolist()]
        if kind != "real" and len(stored) != classes:
            raise DataError(file, "classes", f"{classes} class names (the spec's class({classes}))", f"{len(stored)}: {_data_names(stored)}")
        # Labels are indices into the names: other names, or the same in another order, would
        # relabel every sample.
        if declared is not None and stored != declared:
            raise DataError(file, "classes", f"the spec's classes in its order: {_data_names(declared)}", _data_names(stored))
        class_names = stored
    sha256 = samples_sha256(loaded, names + [target_name], class_names)
    return Dataset(loaded["train"], loaded["valid"], loaded["test"], class_names, str(meta.get("description", file)), meta, sha256)


def samples_sha256(splits, names, classes):
    """
    The SHA-256 of what training reads: each split's arrays (their entry names, shapes and float32
    bytes) and the class names. Not the file's: its `meta` names the spec that exported it, and
    another spec's export of the same samples is the same data.
    """
    digest = hashlib.sha256()
    for split in DATA_SPLITS:
        for name, values in zip(names, splits[split].inputs + [splits[split].labels]):
            digest.update(f"{split}/{name} {_data_shape(values.shape)}\n".encode("utf-8"))
            digest.update(np.ascontiguousarray(values).data)
    digest.update(json.dumps(classes).encode("utf-8"))
    return digest.hexdigest()


def _data_rows(rows, size):
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    index = np.asarray(rows, dtype=np.int64).reshape(-1)
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = int(index[(index < 0) | (index >= size)][0])
        raise IndexError(f"row {bad} of a split of {size} samples")
    return index


def batch_tensors(split, rows, device):
    """The inputs (one tensor per modality, [len(rows), *shape]) and the float32 target of `rows` of a split, in that order."""
    index = _data_rows(rows, split.size)
    inputs = [torch.from_numpy(np.ascontiguousarray(values[index])).to(device) for values in split.inputs]
    target = torch.from_numpy(np.ascontiguousarray(split.labels[index])).to(device)
    return inputs, target


def evaluation_batches(split):
    """A split's rows in order, EVAL_BATCH at a time (the tfjs runtime's evaluation batches)."""
    for start in range(0, split.size, EVAL_BATCH):
        yield list(range(start, min(start + EVAL_BATCH, split.size)))
