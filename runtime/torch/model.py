import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The model of a spec as torch modules, computing what the tfjs trainer's model computes
# (runtime/model.ts): the same layers, the same initial weights drawn from the same seed, and the
# per-modality views a balancing rule reads (Forward). Every op has a second derivative, so that a
# rule may put gradient norms in a loss.
#
# Parameter names are the tfjs ones with torch's words (groups.py): `encoder.audio.dense0.weight`
# for `encoder.audio.dense0.kernel`. Weights are stored in torch's layout: a dense kernel [in, out]
# is a weight [out, in], a conv2d kernel HWIO is OIHW, a conv1d kernel [k, in, out] is [out, in, k];
# tfjs_weights and load_tfjs_weights convert.


# ---- The parameters as the tfjs trainer declares them

def _sizes(value):
    """An option that is one size or a list of sizes (`hidden: [64, 32]`), as a list."""
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


def feature_width(encoder):
    """Width of an encoder's output z[m]."""
    return int(encoder["options"]["out"])


def _dense_shapes(prefix, inputs, outputs, init="he"):
    return [(f"{prefix}.kernel", [inputs, outputs], init), (f"{prefix}.bias", [outputs], "zeros")]


def _layer_shapes(prefix, kernel, outputs, normalized):
    """
    A convolution's or hidden dense layer's parameters: its kernel and a bias, or, batch-normalised
    (`norm: "batch"`), its kernel and the norm's gain and bias (a bias before the norm would cancel).
    """
    if not normalized:
        return [(f"{prefix}.kernel", kernel, "he"), (f"{prefix}.bias", [outputs], "zeros")]
    return [(f"{prefix}.kernel", kernel, "he"), (f"{prefix}.norm.gain", [outputs], 1), (f"{prefix}.norm.bias", [outputs], "zeros")]


def _normalized_layers(encoder):
    """Whether an encoder's hidden layers are batch-normalised."""
    return encoder["options"].get("norm") == "batch"


def _encoder_shapes(prefix, encoder, shape):
    o = encoder["options"]
    kind = encoder["kind"]
    out = feature_width(encoder)
    normalized = _normalized_layers(encoder)
    if kind == "mlp":
        widths = [math.prod(shape), *_sizes(o["hidden"])]
        layers = [s for i in range(len(widths) - 1) for s in _layer_shapes(f"{prefix}.dense{i}", [widths[i], widths[i + 1]], widths[i + 1], normalized)]
        return layers + _dense_shapes(f"{prefix}.last", widths[-1], out, "glorot")
    if kind in ("conv1d", "conv2d"):
        channels = _sizes(o["channels"])
        window = [int(o["kernel"])] * (2 if kind == "conv2d" else 1)
        inputs = [shape[0] if kind == "conv2d" else shape[1], *channels]
        convs = [s for i, c in enumerate(channels) for s in _layer_shapes(f"{prefix}.conv{i}", [*window, inputs[i], c], c, normalized)]
        return convs + _dense_shapes(f"{prefix}.last", channels[-1], out, "glorot")
    if kind == "transformer":
        dim, ff = int(o["dim"]), int(o["ff"])
        shapes = _dense_shapes(f"{prefix}.input", shape[1], dim, "glorot") + [(f"{prefix}.position", [shape[0], dim], "glorot")]
        for layer in range(int(o["layers"])):
            b = f"{prefix}.block{layer}"
            for p in ("query", "key", "value", "output"):
                shapes += _dense_shapes(f"{b}.{p}", dim, dim, "glorot")
            shapes += [(f"{b}.norm1.gain", [dim], 1), (f"{b}.norm1.bias", [dim], "zeros")]
            shapes += _dense_shapes(f"{b}.ff1", dim, ff) + _dense_shapes(f"{b}.ff2", ff, dim, "glorot")
            shapes += [(f"{b}.norm2.gain", [dim], 1), (f"{b}.norm2.bias", [dim], "zeros")]
        return shapes + _dense_shapes(f"{prefix}.last", dim, out, "glorot")
    if kind == "resnet":
        channels = _sizes(o["channels"])
        shapes = _layer_shapes(f"{prefix}.stem", [3, 3, shape[0], channels[0]], channels[0], normalized)
        for i, c in enumerate(channels):
            for j in range(int(o["blocks"])):
                source = channels[i - 1] if j == 0 and i > 0 else c
                b = f"{prefix}.stage{i}.block{j}"
                shapes += _layer_shapes(f"{b}.conv1", [3, 3, source, c], c, normalized) + _layer_shapes(f"{b}.conv2", [3, 3, c, c], c, normalized)
                if source != c or (j == 0 and i > 0):
                    shapes += _layer_shapes(f"{b}.skip", [1, 1, source, c], c, normalized)
        return shapes + _dense_shapes(f"{prefix}.last", channels[-1], out, "glorot")
    if kind in ("lstm", "gru"):
        hidden = int(o["hidden"])
        gates = 4 if kind == "lstm" else 3
        return [
            (f"{prefix}.rnn.kernel", [shape[1], gates * hidden], "glorot"),
            (f"{prefix}.rnn.recurrent", [hidden, gates * hidden], "glorot"),
            (f"{prefix}.rnn.bias", [gates * hidden], "zeros"),
        ] + _dense_shapes(f"{prefix}.last", hidden, out, "glorot")
    raise ValueError(f"unknown encoder kind {kind}")


def _fused_width(spec):
    if spec["fusion"]["kind"] == "expression":
        return int(spec["fusion"]["options"]["width"])
    widths = [feature_width(e) for e in spec["encoders"]]
    return sum(widths) if spec["fusion"]["kind"] in ("concat", "attention") else widths[0]


def _fusion_shapes(prefix, fusion, spec):
    width = feature_width(spec["encoders"][0])
    modalities = len(spec["modalities"])
    if fusion["kind"] == "gated":
        return [s for m in spec["modalities"] for s in _dense_shapes(f"{prefix}.gate.{m['name']}", width, width, "glorot")]
    if fusion["kind"] == "film":
        return _dense_shapes(f"{prefix}.gamma", width, width, "glorot") + _dense_shapes(f"{prefix}.beta", width, width, "glorot")
    if fusion["kind"] == "attention":
        return [(f"{prefix}.w1", [modalities, modalities], "glorot"), (f"{prefix}.w2", [modalities, modalities], "glorot")]
    return []


def _head_outputs(head, spec):
    """A head's outputs per sample: (out,), or (height, width, out) for a segmentation mask."""
    out = int(head["options"]["out"])
    return (*spec["target"]["shape"], out) if spec["target"]["kind"] == "mask" else (out,)


def _head_shapes(prefix, head, inputs, spec):
    out = math.prod(_head_outputs(head, spec))
    if head["kind"] == "linear":
        return _dense_shapes(prefix, inputs, out, "glorot")
    if head["kind"] == "cosine":
        return [(f"{prefix}.kernel", [inputs, out], "glorot")]
    widths = [inputs, *_sizes(head["options"]["hidden"])]
    layers = [s for i in range(len(widths) - 1) for s in _dense_shapes(f"{prefix}.dense{i}", widths[i], widths[i + 1])]
    return layers + _dense_shapes(f"{prefix}.out", widths[-1], out, "glorot")


def parameter_shapes(spec):
    """Every parameter as the tfjs trainer declares it (runtime/model.ts): (tfjs name, tfjs shape, init), in its order."""
    shapes = []
    for modality, encoder in zip(spec["modalities"], spec["encoders"]):
        shapes += _encoder_shapes(encoder_group(modality["name"]), encoder, modality["shape"])
    if spec.get("fusionParts") is not None:
        for i, part in enumerate(spec["fusionParts"]):
            shapes += _fusion_shapes(f"{FUSION_GROUP}.{i}", part, spec)
    else:
        shapes += _fusion_shapes(FUSION_GROUP, spec["fusion"], spec)
    shapes += _head_shapes(HEAD_GROUP, spec["head"], _fused_width(spec), spec)
    if spec.get("auxHead"):
        for modality, encoder in zip(spec["modalities"], spec["encoders"]):
            shapes += _head_shapes(aux_head_group(modality["name"]), spec["auxHead"], feature_width(encoder), spec)
    for learnable in spec["learnables"]:
        names = [m["name"] for m in spec["modalities"]] if learnable["perModality"] else [None]
        shapes += [(learnable_param(learnable["name"], m), [], learnable["init"]) for m in names]
    return shapes


def statistic_shapes(spec):
    """
    The running statistics of the model's batch norms as the tfjs trainer declares them
    (runtime/batch-norm.ts): (name, shape, initial value), a mean of 0 and a variance of 1 per
    norm, in the norms' order. Their names are torch's `state_dict` names.
    """
    shapes = []
    for name, shape, _ in parameter_shapes(spec):
        if name.endswith(".norm.gain"):
            layer = name[: -len(".gain")]
            shapes += [(f"{layer}.running_mean", shape, 0), (f"{layer}.running_var", shape, 1)]
    return shapes


# ---- Names and layouts: tfjs's and torch's

# A kernel's tfjs axes in torch's order, by rank: dense [in, out], conv1d [k, in, out], conv2d HWIO.
_TORCH_AXES = {2: (1, 0), 3: (2, 1, 0), 4: (3, 2, 0, 1)}


def _is_kernel(tfjs_name):
    return tfjs_name.endswith((".kernel", ".recurrent")) and not tfjs_name.startswith("learnable.")


def torch_name(tfjs_name):
    """A parameter's torch name: a kernel or a layer norm's gain is a `weight`, an RNN's kernels `weight_ih` and `weight_hh`."""
    parts = tfjs_name.split(".")
    if parts[0] == "learnable":
        return tfjs_name
    if parts[0] == "encoder" and parts[2:] in (["rnn", "kernel"], ["rnn", "recurrent"]):
        return ".".join(parts[:3] + ["weight_ih" if parts[3] == "kernel" else "weight_hh"])
    return ".".join(parts[:-1] + ["weight"]) if parts[-1] in ("kernel", "gain") else tfjs_name


def torch_layout(tfjs_name, value):
    """A parameter's value (a numpy array, or a tensor: a view) from tfjs's layout to torch's."""
    if not _is_kernel(tfjs_name):
        return value
    axes = _TORCH_AXES[value.ndim]
    return value.permute(axes) if torch.is_tensor(value) else value.transpose(axes)


def tfjs_layout(tfjs_name, value):
    """A parameter's value (numpy) from torch's layout to tfjs's."""
    return value.transpose(np.argsort(_TORCH_AXES[value.ndim])) if _is_kernel(tfjs_name) else value


def initial_values(spec, seed):
    """
    Every parameter's initial value by torch name, in torch's layout, and the initial running
    statistics of its batch norms: drawn exactly as the tfjs
    trainer draws them (runtime/model.ts initialValues), from one Random(seed), parameter after
    parameter in tfjs's order, each in tfjs's layout; he: std sqrt(2 / fan_in), glorot:
    sqrt(2 / (fan_in + fan_out)), with fan_in all dimensions but the last and fan_out the last.
    """
    random = Random(seed)
    values = OrderedDict()
    for name, shape, init in parameter_shapes(spec):
        size = math.prod(shape)
        fan_in = math.prod(shape[:-1]) if len(shape) >= 2 else 1
        fan_out = shape[-1] if len(shape) >= 2 else 1
        if init == "zeros":
            drawn = np.zeros(size, np.float32)
        elif isinstance(init, str):
            drawn = random.normals(size, math.sqrt(2 / fan_in) if init == "he" else math.sqrt(2 / (fan_in + fan_out)))
        else:
            drawn = np.full(size, init, np.float32)
        values[torch_name(name)] = torch.tensor(torch_layout(name, drawn.reshape(shape)))
    for name, shape, init in statistic_shapes(spec):
        values[name] = torch.full(shape, float(init))
    return values


def tfjs_names(model):
    """(tfjs name, tfjs shape, torch name) of every parameter, then of every running statistic, in tfjs's order."""
    parameters = [(name, shape, torch_name(name)) for name, shape, _ in parameter_shapes(model.spec)]
    return parameters + [(name, shape, name) for name, shape, _ in statistic_shapes(model.spec)]


def tfjs_weights(model):
    """The model's weights and running statistics by tfjs name, in tfjs's layout, as float32 numpy arrays (for a tfjs checkpoint)."""
    state = model.state_dict()
    return {
        name: np.array(tfjs_layout(name, state[key].detach().cpu().numpy()), dtype=np.float32, order="C")
        for name, _, key in tfjs_names(model)
    }


def load_tfjs_weights(model, arrays):
    """Sets the model's weights (and running statistics) from tfjs-named arrays in tfjs's layout; every one must be given, in its shape."""
    expected = tfjs_names(model)
    unknown = sorted(set(arrays) - {name for name, _, _ in expected})
    if unknown:
        raise ValueError(f"weights for {', '.join(unknown)}, which the model does not have")
    values = {}
    for name, shape, key in expected:
        if name not in arrays:
            raise ValueError(f"no weights for parameter {name} (expected shape {shape})")
        array = np.asarray(arrays[name], dtype=np.float32)
        if list(array.shape) != list(shape):
            raise ValueError(f"parameter {name}: expected shape {list(shape)}, found {list(array.shape)}")
        values[key] = torch.tensor(torch_layout(name, array))
    model.load_state_dict(values)


# ---- Layers

def _gelu(x):
    """gelu as tfjs's trainer approximates it."""
    return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": _gelu}


def _activation(options):
    """The `activation` option's function; relu when absent (or unknown, as tfjs's trainer reads it)."""
    return _ACTIVATIONS.get(str(options.get("activation", "relu")), torch.relu)


def _layers(module, kind):
    """A module's numbered children `kind0`, `kind1`, ..., in order."""
    return [child for name, child in module.named_children() if name.startswith(kind) and name[len(kind):].isdigit()]


def _same_padding(x, kernel_size, stride):
    """
    TensorFlow's 'same' padding of x's spatial axes: ceil(size / stride) outputs, and an odd unit
    of padding after, not before (torch's `padding="same"` is symmetric, stride 1 only). As
    (symmetric padding per axis, None), which the convolution applies without a copy, or, where
    it is not symmetric, (0, F.pad's list).
    """
    before, pads = [], []
    for size, k, s in zip(x.shape[2:], kernel_size, stride):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        before.append(total // 2)
        pads = [total // 2, total - total // 2] + pads
    return (tuple(before), None) if pads[::2] == pads[1::2] else (0, pads)


# Batch normalisation as PyTorch's BatchNorm (what runtime/batch-norm.ts computes): the share of a
# new batch in the running statistics, and the variance's epsilon.
STATISTICS_MOMENTUM = 0.1
VARIANCE_EPSILON = 1e-5


class BatchNorm(nn.Module):
    """
    A batch norm over [batch, channels, ...]. A training pass normalises each channel with its
    batch's mean and biased variance (over the global batch when processes share it, as
    SyncBatchNorm) and keeps, in `measured`, the running statistics this batch would make
    (running · 0.9 + batch · 0.1, the variance unbiased); only the step's update commits them
    (commit_statistics), once per update that moves the norm's weights, as the tfjs trainer does.
    The step's other passes (`grad(G, L)`, `probe`, second order) change nothing. An evaluation
    pass normalises with the running statistics.
    """

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.measured = None
        # Its name in the model (Model names every norm), for the messages.
        self.layer = "batch norm"

    def forward(self, x):
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, VARIANCE_EPSILON)
        count = batch_size(x.shape[0]) * math.prod(x.shape[2:])
        if count < 2:
            # As the tfjs trainer says it (runtime/batch-norm.ts): an MLP's batch of one sample has no variance to normalise by.
            raise RunError(f'batch normalisation of {self.layer} needs more than one value per channel in training, found {count} (a training batch of one sample?); give the encoder `norm: "none"` or a larger batch')
        if not batch_is_shared():
            # F.batch_norm moves the statistics it is given: copies, committed by the update alone.
            mean, variance = self.running_mean.clone(), self.running_var.clone()
            y = F.batch_norm(x, mean, variance, self.weight, self.bias, True, STATISTICS_MOMENTUM, VARIANCE_EPSILON)
            self.measured = (mean, variance)
            return y
        axes = [0, *range(2, x.dim())]
        per_channel = lambda t: t.reshape(1, -1, *([1] * (x.dim() - 2)))
        mean = batch_total(x.sum(axes)) / count
        variance = batch_total((x - per_channel(mean)).square().sum(axes)) / count
        with torch.no_grad():
            self.measured = (
                self.running_mean * (1 - STATISTICS_MOMENTUM) + mean * STATISTICS_MOMENTUM,
                self.running_var * (1 - STATISTICS_MOMENTUM) + variance * (count / (count - 1)) * STATISTICS_MOMENTUM,
            )
        return (x - per_channel(mean)) / per_channel((variance + VARIANCE_EPSILON).sqrt()) * per_channel(self.weight) + per_channel(self.bias)


def measured_statistics(model):
    """What the model's batch norms measured in the pass just made, by norm (and cleared for the next pass)."""
    measured = {}
    for name, norm in model.batch_norms.items():
        if norm.measured is not None:
            measured[name] = norm.measured
            norm.measured = None
    return measured


@torch.no_grad()
def commit_statistics(model, measured, moves):
    """Sets the running statistics of the norms `moves(norm name)` selects to what a pass `measured`."""
    for name, (mean, variance) in measured.items():
        if moves(name):
            model.batch_norms[name].running_mean.copy_(mean)
            model.batch_norms[name].running_var.copy_(variance)


class _SamePadded:
    """
    A convolution (mixed into nn.Conv1d or nn.Conv2d, whose `convolve` it calls) padded as
    TensorFlow's 'same', then its bias or, with `norm`, a batch norm (`.norm`).
    """

    def __init__(self, inputs, outputs, kernel_size, stride=1, norm=False):
        super().__init__(inputs, outputs, kernel_size, stride=stride, bias=not norm)
        self.norm = BatchNorm(outputs) if norm else None

    def forward(self, x):
        padding, pads = _same_padding(x, self.kernel_size, self.stride)
        y = self.convolve(x if pads is None else F.pad(x, pads), self.weight, self.bias, self.stride, padding)
        return y if self.norm is None else self.norm(y)


class Conv1dSame(_SamePadded, nn.Conv1d):
    convolve = staticmethod(F.conv1d)


class Conv2dSame(_SamePadded, nn.Conv2d):
    convolve = staticmethod(F.conv2d)


class Dense(nn.Linear):
    """A hidden dense layer: its bias or, with `norm`, a batch norm (`.norm`)."""

    def __init__(self, inputs, outputs, norm=False):
        super().__init__(inputs, outputs, bias=not norm)
        self.norm = BatchNorm(outputs) if norm else None

    def forward(self, x):
        y = super().forward(x)
        return y if self.norm is None else self.norm(y)


def _normalized(x, dim):
    """x over its norm along dim, +1e-12 as tfjs's trainer divides (a zero row stays zero)."""
    return x / (x.pow(2).sum(dim, keepdim=True).sqrt() + 1e-12)


def _cosine_logits(weight, x, slices, scale):
    """scale · Σ over slices of x's slice, normalised, times each class's weights for it, normalised: cosines, no bias."""
    parts = [_normalized(xs, 1) @ _normalized(ws, 1).t() for xs, ws in zip(x.split(slices, 1), weight.split(slices, 1))]
    return scale * torch.stack(parts).sum(0)


# ---- Encoders: [batch, *modality shape] to z [batch, out]

class MLPEncoder(nn.Module):
    def __init__(self, shape, options, prefix):
        super().__init__()
        widths = [math.prod(shape), *_sizes(options["hidden"])]
        for i in range(len(widths) - 1):
            self.add_module(f"dense{i}", Dense(widths[i], widths[i + 1], norm=options.get("norm") == "batch"))
        self.last = nn.Linear(widths[-1], int(options["out"]))
        self.activation = _activation(options)
        self.dropout = float(options.get("dropout", 0))
        # The tfjs names of the layers start with it (`encoder.<m>`): each layer's dropout has its own stream.
        self.prefix = prefix
        # Each training pass's draws (Forward's `draws`): the step's StepRandom, and where the pass's rows lie in its batch.
        self.draws = None

    def forward(self, x):
        h = x.flatten(1)
        for i, dense in enumerate(_layers(self, "dense")):
            h = self.activation(dense(h))
            if self.training and self.dropout > 0:
                if self.draws is None:
                    raise RuntimeError(f"a training pass through {self.prefix}, whose layers drop out, needs the step's draws (Forward's `draws`)")
                random, first, total = self.draws
                h = random.layer_dropout(f"{self.prefix}.dense{i}", h, self.dropout, first, total)
        return self.last(h)


class ConvEncoder(nn.Module):
    """
    conv1d ([batch, steps, channels]) or conv2d ([batch, channels, height, width]): convolutions of
    stride 2, the mean over positions, then `last`.
    """

    def __init__(self, kind, shape, options):
        super().__init__()
        self.steps_first = kind == "conv1d"
        conv = Conv1dSame if self.steps_first else Conv2dSame
        channels = _sizes(options["channels"])
        inputs = [shape[1] if self.steps_first else shape[0], *channels]
        for i, c in enumerate(channels):
            self.add_module(f"conv{i}", conv(inputs[i], c, int(options["kernel"]), stride=2, norm=options.get("norm") == "batch"))
        self.last = nn.Linear(channels[-1], int(options["out"]))
        self.activation = _activation(options)

    def forward(self, x):
        h = x.transpose(1, 2) if self.steps_first else x
        for conv in _layers(self, "conv"):
            h = self.activation(conv(h))
        return self.last(h.flatten(2).mean(2))


class TransformerBlock(nn.Module):
    """A post-norm block: multi-head self-attention, then a ReLU feed-forward, each added back and normalised."""

    def __init__(self, dim, heads, ff):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.ff1 = nn.Linear(dim, ff)
        self.ff2 = nn.Linear(ff, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, h):
        batch, steps, dim = h.shape

        def split(t):
            return t.reshape(batch, steps, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = q @ k.transpose(2, 3) / math.sqrt(dim / self.heads)
        mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, steps, dim)
        h = self.norm1(h + self.output(mixed))
        return self.norm2(h + self.ff2(torch.relu(self.ff1(h))))


class TransformerEncoder(nn.Module):
    """[batch, steps, features]: a linear embedding plus a learnt position table, blocks, the mean over steps, `last`."""

    def __init__(self, shape, options):
        super().__init__()
        steps, features = shape
        dim = int(options["dim"])
        self.input = nn.Linear(features, dim)
        self.position = nn.Parameter(torch.zeros(steps, dim))
        for layer in range(int(options["layers"])):
            self.add_module(f"block{layer}", TransformerBlock(dim, int(options["heads"]), int(options["ff"])))
        self.last = nn.Linear(dim, int(options["out"]))

    def forward(self, x):
        h = self.input(x) + self.position
        for block in _layers(self, "block"):
            h = block(h)
        return self.last(h.mean(1))


class ResidualBlock(nn.Module):
    """
    Two 3×3 convolutions added to the input, through a 1×1 projection where the shape changes, as
    torchvision's BasicBlock: conv–norm–relu, conv–norm, + skip, relu (each norm a bias without `norm`).
    """

    def __init__(self, inputs, channels, stride, norm):
        super().__init__()
        self.conv1 = Conv2dSame(inputs, channels, 3, stride=stride, norm=norm)
        self.conv2 = Conv2dSame(channels, channels, 3, norm=norm)
        self.skip = Conv2dSame(inputs, channels, 1, stride=stride, norm=norm) if inputs != channels or stride != 1 else None

    def forward(self, x):
        inner = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(inner + (x if self.skip is None else self.skip(x)))


class ResNetEncoder(nn.Module):
    """[batch, channels, height, width]: a 3×3 stem, stages of basic blocks (each after the first halves the size), the mean, `last`."""

    def __init__(self, shape, options):
        super().__init__()
        channels = _sizes(options["channels"])
        norm = options.get("norm") == "batch"
        self.stem = Conv2dSame(shape[0], channels[0], 3, norm=norm)
        for i, c in enumerate(channels):
            blocks = OrderedDict()
            for j in range(int(options["blocks"])):
                first = j == 0 and i > 0
                blocks[f"block{j}"] = ResidualBlock(channels[i - 1] if first else c, c, 2 if first else 1, norm)
            self.add_module(f"stage{i}", nn.Sequential(blocks))
        self.last = nn.Linear(channels[-1], int(options["out"]))

    def forward(self, x):
        h = torch.relu(self.stem(x))
        for stage in _layers(self, "stage"):
            h = stage(h)
        return self.last(h.mean((2, 3)))


class Recurrent(nn.Module):
    """
    An LSTM or a GRU written with plain ops, so that it has second derivatives, in tfjs's gate order
    (i, f, g, o; z, r, n): the last hidden state of [batch, steps, features].
    """

    def __init__(self, kind, inputs, hidden):
        super().__init__()
        gates = 4 if kind == "lstm" else 3
        self.kind = kind
        self.hidden = hidden
        self.weight_ih = nn.Parameter(torch.zeros(gates * hidden, inputs))
        self.weight_hh = nn.Parameter(torch.zeros(gates * hidden, hidden))
        self.bias = nn.Parameter(torch.zeros(gates * hidden))

    def forward(self, x):
        projected = F.linear(x, self.weight_ih, self.bias)
        h = c = x.new_zeros(x.shape[0], self.hidden)
        for inputs in projected.unbind(1):
            if self.kind == "lstm":
                i, f, g, o = (inputs + h @ self.weight_hh.t()).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xz, xr, xn = inputs.chunk(3, 1)
                hz, hr, hn = (h @ self.weight_hh.t()).chunk(3, 1)
                z = torch.sigmoid(xz + hz)
                r = torch.sigmoid(xr + hr)
                n = torch.tanh(xn + r * hn)
                h = (1 - z) * n + z * h
        return h


class RecurrentEncoder(nn.Module):
    def __init__(self, kind, shape, options):
        super().__init__()
        self.rnn = Recurrent(kind, shape[1], int(options["hidden"]))
        self.last = nn.Linear(int(options["hidden"]), int(options["out"]))

    def forward(self, x):
        return self.last(self.rnn(x))


def _encoder(encoder, shape, prefix):
    kind, options = encoder["kind"], encoder["options"]
    if kind == "mlp":
        return MLPEncoder(shape, options, prefix)
    if kind in ("conv1d", "conv2d"):
        return ConvEncoder(kind, shape, options)
    if kind == "transformer":
        return TransformerEncoder(shape, options)
    if kind == "resnet":
        return ResNetEncoder(shape, options)
    if kind in ("lstm", "gru"):
        return RecurrentEncoder(kind, shape, options)
    raise ValueError(f"unknown encoder kind {kind}")


# ---- Fusions: the list z to the fused features

class ConcatFusion(nn.Module):
    def forward(self, z):
        return torch.cat(z, 1)


class SumFusion(nn.Module):
    def forward(self, z):
        return torch.stack(z).sum(0)


class GatedFusion(nn.Module):
    """Each modality's features times a sigmoid gate computed from them, summed."""

    def __init__(self, modalities, width):
        super().__init__()
        self.gate = nn.ModuleDict({m: nn.Linear(width, width) for m in modalities})

    def forward(self, z):
        return torch.stack([torch.sigmoid(gate(zm)) * zm for gate, zm in zip(self.gate.values(), z)]).sum(0)


class FiLMFusion(nn.Module):
    """The other modalities' summed features, scaled and shifted by linear functions of modality `by`'s."""

    def __init__(self, by, width):
        super().__init__()
        self.by = by
        self.gamma = nn.Linear(width, width)
        self.beta = nn.Linear(width, width)

    def forward(self, z):
        others = torch.stack([zm for m, zm in enumerate(z) if m != self.by]).sum(0)
        return (1 + self.gamma(z[self.by])) * others + self.beta(z[self.by])


class AttentionFusion(nn.Module):
    """Squeezes each modality to its mean feature, weights the modalities per sample, keeps them side by side."""

    def __init__(self, modalities):
        super().__init__()
        self.w1 = nn.Parameter(torch.zeros(modalities, modalities))
        self.w2 = nn.Parameter(torch.zeros(modalities, modalities))

    def forward(self, z):
        pooled = torch.stack([zm.mean(1) for zm in z], 1)
        weights = torch.sigmoid(torch.relu(pooled @ self.w1) @ self.w2)
        return torch.cat([weights[:, m:m + 1] * zm for m, zm in enumerate(z)], 1)


def _fusion(fusion, spec):
    names = [m["name"] for m in spec["modalities"]]
    width = feature_width(spec["encoders"][0])
    kind = fusion["kind"]
    if kind == "concat":
        return ConcatFusion()
    if kind == "sum":
        return SumFusion()
    if kind == "gated":
        return GatedFusion(names, width)
    if kind == "film":
        return FiLMFusion(names.index(fusion["options"]["by"]), width)
    if kind == "attention":
        return AttentionFusion(len(names))
    raise ValueError(f"unknown fusion {kind}")


class FusionInputs:
    """What a fusion expression (the trainer's `fuse(inputs)`) reads."""

    def __init__(self, model, z):
        self.model = model
        self.z = z
        self.modalities = list(range(len(z)))

    def part(self, i):
        """The output of the i-th built-in fusion the expression uses (spec["fusionParts"][i])."""
        return self.model.fusion[i](self.z)

    def learnable(self, name, m=None):
        return self.model.get_parameter(learnable_param(name, None if m is None else self.model.modality_names[m]))

    def other(self, m):
        return 1 - m


# ---- Heads: features [batch, width] to outputs [batch, out], or [batch, height, width, out] for a mask

class LinearHead(nn.Linear):
    def __init__(self, inputs, outputs):
        super().__init__(inputs, math.prod(outputs))
        self.outputs = outputs

    def forward(self, x):
        return super().forward(x).reshape(x.shape[0], *self.outputs)


class CosineHead(nn.Module):
    """
    scale times the cosines of the features with each class's weights. Over concatenated features
    (`slices`: the modalities' widths), each modality's slice is compared with its own weights.
    """

    def __init__(self, inputs, outputs, scale, slices):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(math.prod(outputs), inputs))
        self.outputs = outputs
        self.scale = scale
        self.slices = slices

    def forward(self, x):
        return _cosine_logits(self.weight, x, self.slices, self.scale).reshape(x.shape[0], *self.outputs)


class MLPHead(nn.Module):
    def __init__(self, inputs, outputs, options):
        super().__init__()
        widths = [inputs, *_sizes(options["hidden"])]
        for i in range(len(widths) - 1):
            self.add_module(f"dense{i}", nn.Linear(widths[i], widths[i + 1]))
        self.out = nn.Linear(widths[-1], math.prod(outputs))
        self.outputs = outputs
        self.activation = _activation(options)

    def forward(self, x):
        h = x
        for dense in _layers(self, "dense"):
            h = self.activation(dense(h))
        return self.out(h).reshape(x.shape[0], *self.outputs)


def _head(head, inputs, spec, slices):
    outputs = _head_outputs(head, spec)
    if head["kind"] == "linear":
        return LinearHead(inputs, outputs)
    if head["kind"] == "cosine":
        return CosineHead(inputs, outputs, float(head["options"]["scale"]), slices)
    if head["kind"] == "mlp":
        return MLPHead(inputs, outputs, head["options"])
    raise ValueError(f"unknown head {head['kind']}")


class Learnables(nn.Module):
    """`learnable name = init`: a scalar parameter `name`; `learnable name[m] = init`: one per modality, `name.<m>`."""

    def __init__(self, learnables, modalities):
        super().__init__()
        for learnable in learnables:
            init = float(learnable["init"])
            if learnable["perModality"]:
                self.add_module(learnable["name"], nn.ParameterDict([(m, nn.Parameter(torch.tensor(init))) for m in modalities]))
            else:
                self.register_parameter(learnable["name"], nn.Parameter(torch.tensor(init)))


# ---- The model

class Model(nn.Module):
    """
    The model of a spec (the JSON of the tfjs trainer's ModelSpec): `encoder.<m>`, `fusion` (a
    built-in, or the list of an expression's built-in parts), `head`, `aux.<m>` and `learnable`,
    starting from the weights the tfjs trainer draws from `seed`. `fuse` computes a fusion
    expression (spec fusion kind "expression") from a FusionInputs.
    """

    def __init__(self, spec, seed, fuse=None):
        super().__init__()
        if spec["fusion"]["kind"] == "expression" and fuse is None:
            raise ValueError("the spec's fusion is an expression: pass its function as `fuse`")
        self.spec = spec
        self.modality_names = [m["name"] for m in spec["modalities"]]
        self.widths = [feature_width(e) for e in spec["encoders"]]
        self.expression = fuse
        self.encoder = nn.ModuleDict({m["name"]: _encoder(e, m["shape"], f"encoder.{m['name']}") for m, e in zip(spec["modalities"], spec["encoders"])})
        if spec.get("fusionParts") is not None:
            self.fusion = nn.ModuleList([_fusion(part, spec) for part in spec["fusionParts"]])
        else:
            self.fusion = _fusion(spec["fusion"], spec)
        fused = _fused_width(spec)
        self.head = _head(spec["head"], fused, spec, self.widths if spec["fusion"]["kind"] == "concat" else [fused])
        if spec.get("auxHead"):
            self.aux = nn.ModuleDict({m: _head(spec["auxHead"], w, spec, [w]) for m, w in zip(self.modality_names, self.widths)})
        self.learnable = Learnables(spec["learnables"], self.modality_names)
        self.load_state_dict(initial_values(spec, seed))
        # The parameters' torch names in the tfjs trainer's order (torch lists a module's own
        # parameters before its children's: a transformer's `position`, scalar learnables).
        self.parameter_order = [torch_name(name) for name, _, _ in parameter_shapes(spec)]
        # The batch norms by name, found once: every training pass reads what they measured.
        self.batch_norms = {name: module for name, module in self.named_modules() if isinstance(module, BatchNorm)}
        for name, module in self.batch_norms.items():
            module.layer = name
        # The encoders whose layers drop out in training: every training pass gives them its draws.
        self.dropouts = [module for module in self.modules() if isinstance(module, MLPEncoder) and module.dropout > 0]

    def parameters_by_name(self):
        """The parameters by torch name, in the tfjs trainer's order: a group's statistics sum them in the same order in both targets."""
        params = dict(self.named_parameters())
        return OrderedDict((key, params[key]) for key in self.parameter_order)

    def features(self, inputs):
        """z[m] of every modality."""
        return [encoder(x) for encoder, x in zip(self.encoder.values(), inputs)]

    def fuse(self, z):
        return self.fusion(z) if self.expression is None else self.expression(FusionInputs(self, z))

    def forward(self, inputs):
        return self.head(self.fuse(self.features(inputs)))


def _scaled(z, factor):
    """z[m] times its `keep` factor; 0 gives zeros not connected to the encoder, so that nothing reaches it through them."""
    if isinstance(factor, (int, float)):
        if factor == 1:
            return z
        if factor == 0:
            return torch.zeros_like(z)
    return z * factor


class Forward:
    """
    The values of one forward pass and the per-modality views a rule reads, as runtime/model.ts's
    Forward; a view is computed when first read, once per pass. The pass sets the model's mode
    (`training`: dropout, and batch norms normalise with the batch; else with running statistics).
    `keep`: per-modality multipliers of z[m], 0 to evaluate without the modality, a [batch, 1]
    mask to drop it for some samples; absent, every modality as it is. `draws`: a training pass's
    (StepRandom, first row, rows of the step's batch) for the encoders' dropout (layer_dropout).
    """

    def __init__(self, model, inputs, target, training=True, keep=None, draws=None):
        model.train(training)
        for encoder in model.dropouts:
            encoder.draws = draws
        self.model = model
        self.inputs = inputs
        self.target = target
        self.group = Groups(model.modality_names)
        self.z = [_scaled(z, 1 if keep is None else keep[m]) for m, z in enumerate(model.features(inputs))]
        # A training pass's batch statistics, by batch norm: the step's update pass commits them.
        self.measured = measured_statistics(model)
        self.fused = model.fuse(self.z)
        self.out = model.head(self.fused)
        self._views = {}

    def _view(self, key, compute):
        if key not in self._views:
            self._views[key] = compute()
        return self._views[key]

    def _head_with(self, present):
        z = [zm if present(m) else torch.zeros_like(zm) for m, zm in enumerate(self.z)]
        return self.model.head(self.model.fuse(z))

    def alone(self, m):
        """The head's output with only modality m's features (the others' z set to zero)."""
        return self._view(f"alone{m}", lambda: self._head_with(lambda k: k == m))

    def without(self, m):
        """The head's output with modality m's features set to zero."""
        return self._view(f"without{m}", lambda: self._head_with(lambda k: k != m))

    @property
    def modalities(self):
        return list(range(len(self.z)))

    def except_(self, m):
        """Modalities except m (`sum(k != m, ...)`)."""
        return [k for k in self.modalities if k != m]

    def other(self, m):
        """The other modality; the checker allows `other(m)` only with exactly two."""
        return 1 - m

    def weights(self, group):
        """`weights(G)`: the group's parameters, as copies that keep this step's values and are differentiable."""
        params = self.model.parameters_by_name()
        return [params[n].clone() for n in members_of(params, group)]

    def param(self, name):
        """A parameter's value in this pass (a learnable read by a rule), a copy as `weights`."""
        params = self.model.parameters_by_name()
        if name not in params:
            raise KeyError(f"no parameter {name}")
        return params[name].clone()

    def contrib(self, m):
        """
        Modality m's additive share of the logits of a linear head over a fusion linear in the
        features (the checker allows nothing else): fuse(z_m alone)·W + b/M; z_m·W_m + b/M for
        concat. A cosine head over concat: m's cosines with its own slice of the weights.
        """
        return self._view(f"contrib{m}", lambda: self._contrib(m))

    def _contrib(self, m):
        model = self.model
        head = model.head
        start = sum(model.widths[:m])
        own = head.weight[:, start:start + model.widths[m]]
        if model.spec["head"]["kind"] == "cosine":
            return _cosine_logits(own, self.z[m], [model.widths[m]], head.scale)
        share = head.bias / len(self.z)
        if model.expression is not None:
            return F.linear(model.fuse([zk if k == m else torch.zeros_like(zk) for k, zk in enumerate(self.z)]), head.weight, share)
        if model.spec["fusion"]["kind"] == "concat":
            return F.linear(self.z[m], own, share)
        return F.linear(self.z[m], head.weight, share)

    def aux(self, m):
        """Modality m's auxiliary head's output, which sees z[m] detached from the encoder unless declared `detach: false`."""
        detach = self.model.spec["auxHead"]["options"].get("detach") is not False
        return self._view(f"aux{m}", lambda: self.model.aux[self.model.modality_names[m]](self.z[m].detach() if detach else self.z[m]))
