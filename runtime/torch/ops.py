import builtins
import contextlib
import math

import torch
import torch.nn.functional as F

# The functions a rule's code calls, as runtime/ops.ts computes them, op for op, so that the torch
# trainer agrees with the tfjs one to float32 rounding. Each takes what a rule value can be: a plain
# number (known before the step: `step`, a `param`), a tensor (one number, one per sample, a head's
# outputs), or a gradient-shaped value: a list with one tensor per parameter of a group.
#
# Under torchrun each process holds a part of every batch, and every value is still the global
# batch's: the reductions over the batch below add up every process's part (batch_total), and
# gradients are the global batch's (batch_gradients). See "the batch, shared by processes".


def _is_number(x):
    return isinstance(x, (int, float, bool))


def _tensor(x, like):
    """A number as a float32 tensor on the device of `like` (a tensor), to meet it in an op."""
    return x if torch.is_tensor(x) else torch.tensor(float(x), dtype=torch.float32, device=like.device)


def _pair(a, b):
    """Two operands as tensors on one device; a number takes the other's device."""
    if torch.is_tensor(a):
        return a, _tensor(b, a)
    if torch.is_tensor(b):
        return _tensor(a, b), b
    return torch.tensor(float(a)), torch.tensor(float(b))


def _by_sample(a, b):
    """A per-sample value [batch] meets a head's outputs [batch, classes, ...] row by row, not along the last axis."""
    if torch.is_tensor(a) and torch.is_tensor(b):
        if a.dim() == 1 and b.dim() > 1:
            return a.reshape(a.shape[0], *([1] * (b.dim() - 1))), b
        if b.dim() == 1 and a.dim() > 1:
            return a, b.reshape(b.shape[0], *([1] * (a.dim() - 1)))
    return a, b


class Grouped(list):
    """
    A gradient-shaped value that knows its parameters: one tensor per parameter of a group, and
    their names. Arithmetic keeps the names, so that a draw per element (`bernoulli(p)`) can follow
    each parameter's tfjs layout and order, as the tfjs trainer draws it (BatchRandom, step.py).
    """

    def __init__(self, tensors, names):
        super().__init__(tensors)
        self.names = list(names)


def _grouped_as(operands, tensors):
    """`tensors` with the parameter names of the first operand that has them."""
    named = next((o for o in operands if isinstance(o, Grouped)), None)
    return Grouped(tensors, named.names) if named is not None else tensors


def _elementwise(op, a, b):
    """`op` of two values: tensor by tensor for gradient-shaped ones (a number meets every tensor)."""
    if isinstance(a, list) or isinstance(b, list):
        length = len(a) if isinstance(a, list) else len(b)
        return _grouped_as((a, b), [op(a[i] if isinstance(a, list) else a, b[i] if isinstance(b, list) else b) for i in range(length)])
    return op(a, b)


def _arithmetic(number_op, tensor_op):
    def apply(a, b):
        if _is_number(a) and _is_number(b):
            return number_op(a, b)
        return tensor_op(*_by_sample(*_pair(a, b)))

    return lambda a, b: _elementwise(apply, a, b)


add = _arithmetic(lambda a, b: a + b, torch.add)
sub = _arithmetic(lambda a, b: a - b, torch.sub)
mul = _arithmetic(lambda a, b: a * b, torch.mul)
div = _arithmetic(lambda a, b: a / b, torch.div)
# a − b·floor(a / b), the sign of the divisor, as tf.mod and Python's %.
mod = _arithmetic(lambda a, b: a % b, torch.remainder)
power = _arithmetic(lambda a, b: a**b, torch.pow)


def _comparison(number_op, tensor_op):
    def apply(a, b):
        if _is_number(a) and _is_number(b):
            return number_op(a, b)
        return tensor_op(*_pair(a, b))

    return apply


less = _comparison(lambda a, b: a < b, torch.lt)
less_equal = _comparison(lambda a, b: a <= b, torch.le)
greater = _comparison(lambda a, b: a > b, torch.gt)
greater_equal = _comparison(lambda a, b: a >= b, torch.ge)
equal = _comparison(lambda a, b: a == b, torch.eq)
not_equal = _comparison(lambda a, b: a != b, torch.ne)


def _condition(c, like=None):
    return c if torch.is_tensor(c) else torch.tensor(bool(c), device=like.device if torch.is_tensor(like) else None)


def logical_and(a, b):
    if _is_number(a) and _is_number(b):
        return bool(a) and bool(b)
    return torch.logical_and(_condition(a, b), _condition(b, a))


def logical_or(a, b):
    if _is_number(a) and _is_number(b):
        return bool(a) or bool(b)
    return torch.logical_or(_condition(a, b), _condition(b, a))


def logical_not(a):
    return (not a) if _is_number(a) else torch.logical_not(a)


def _unary(number_op, tensor_op):
    """An elementwise function of a number, a tensor, or each element of a gradient-shaped value."""

    def apply(x):
        if isinstance(x, list):
            return _grouped_as((x,), [tensor_op(t) for t in x])
        return number_op(x) if _is_number(x) else tensor_op(x)

    return apply


neg = _unary(lambda x: -x, torch.neg)
absolute = _unary(builtins.abs, torch.abs)
exp = _unary(math.exp, torch.exp)
log = _unary(math.log, torch.log)
sqrt = _unary(math.sqrt, torch.sqrt)
tanh = _unary(math.tanh, torch.tanh)
sigmoid = _unary(lambda x: 1 / (1 + math.exp(-x)), torch.sigmoid)
relu = _unary(lambda x: builtins.max(0, x), torch.relu)
sign = _unary(lambda x: float((x > 0) - (x < 0)), torch.sign)
square = _unary(lambda x: x**2, torch.square)
floor = _unary(math.floor, torch.floor)
sin = _unary(math.sin, torch.sin)
detach = _unary(lambda x: x, torch.Tensor.detach)


def maximum(a, b):
    if _is_number(a) and _is_number(b):
        return builtins.max(a, b)
    return torch.maximum(*_pair(a, b))


def minimum(a, b):
    if _is_number(a) and _is_number(b):
        return builtins.min(a, b)
    return torch.minimum(*_pair(a, b))


def clamp(x, lo, hi):
    """x limited to [lo, hi]; of a gradient-shaped value, each element."""
    if isinstance(x, list):
        return _grouped_as((x,), [clamp(t, lo, hi) for t in x])
    return minimum(maximum(x, lo), hi)


def choose(condition, a, b):
    """`if c then a else b`, elementwise; of a gradient-shaped value, each tensor where c holds."""
    if isinstance(a, list) or isinstance(b, list):
        return _elementwise(lambda x, y: choose(condition, x, y), a, b)
    if _is_number(condition) and _is_number(a) and _is_number(b):
        return a if condition else b
    like = next(t for t in (a, b, condition) if torch.is_tensor(t))
    c = _condition(condition, like)
    ta, tb = _tensor(a, like).float(), _tensor(b, like).float()
    shape = torch.broadcast_shapes(c.shape, ta.shape, tb.shape)
    return torch.where(c.expand(shape), ta.expand(shape), tb.expand(shape))


# ---------------------------------------------------------------- the batch, shared by processes

# Under torchrun (train.py), N processes share each global batch: each holds consecutive rows of
# it (`batch_part`) and runs the whole step on them, and every quantity a rule, a loss or the log
# reads is the one a single process computes from the whole batch. A sum over the batch is each
# process's sum, summed over the processes (batch_total); a gradient is the mean of the processes'
# gradients (batch_gradients); code that reads every sample (a draw per sample, class means) reads
# the whole batch (whole_batch) and keeps its own rows (own_rows). Outside a step, and for a
# process that trains alone, nothing is shared and torch.distributed is never called. (`import
# torch` loads torch.distributed: torch.utils.data's DistributedSampler imports it.)

# (rank, number of processes) of the processes that share each batch; None: this process trains alone.
_batch_processes = None
# This step's part of the batch, while shared: (its first row, its rows, the global batch's rows,
# the most rows any process holds).
_batch_part = None


def share_batches(processes):
    """From now on, each step's batch is shared by `processes` ((rank, number of processes)), or by none (None)."""
    global _batch_processes
    _batch_processes = processes


@contextlib.contextmanager
def batch_part(size):
    """
    This process's rows of a global batch of `size` rows, as a slice of their positions, for the
    step run inside the block. Processes take consecutive parts in rank order, the first size mod
    N processes one row more: the batch's rows in order are the parts in rank order, so that a
    draw per sample falls on the same sample on any number of processes. A part may be empty (a
    last batch of fewer rows than processes).
    """
    global _batch_part
    if _batch_processes is None:
        yield slice(0, size)
        return
    rank, world = _batch_processes
    base, extra = divmod(size, world)
    start = rank * base + builtins.min(rank, extra)
    rows = base + (1 if rank < extra else 0)
    _batch_part = (start, rows, size, base + (1 if extra else 0))
    try:
        yield slice(start, start + rows)
    finally:
        _batch_part = None


@contextlib.contextmanager
def unshared_batch():
    """Inside the block, the batch is this process's rows alone: `per_sample`'s loss of one sample is that sample's."""
    global _batch_part
    shared, _batch_part = _batch_part, None
    try:
        yield
    finally:
        _batch_part = shared


class _Total(torch.autograd.Function):
    """
    A tensor summed over the processes, every process receiving the sum. Its gradient is the sum
    of every process's gradient of the sum: each process differentiates the same global value, so
    each finds, through its own rows, the gradient of N times that value (batch_gradients divides
    by N). Differentiable again, so that a second-order loss differentiates through it.
    """

    @staticmethod
    def forward(ctx, x):
        total = x.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        return _Total.apply(grad)


def batch_total(x):
    """Σ over the processes of x, each process's part of a sum over the global batch; x itself when the batch is not shared."""
    return x if _batch_part is None else _Total.apply(x)


def batch_is_shared():
    """Whether this step's batch is shared by processes (a reduction over it must all-reduce)."""
    return _batch_part is not None


def batch_size(rows):
    """The global batch's rows, for a process that holds `rows` of them."""
    return rows if _batch_part is None else _batch_part[2]


def batch_rows(rows):
    """Where this process's `rows` lie in the global batch: (first row, the global batch's rows)."""
    return (0, rows) if _batch_part is None else (_batch_part[0], _batch_part[2])


def rows_per_process(rows):
    """The most rows any process holds of this step's batch (`rows`: this process's)."""
    return rows if _batch_part is None else _batch_part[3]


def whole_batch(x):
    """
    The whole global batch of a per-sample value x ([rows, ...]) on every process: each process's
    rows, in order. Differentiable: each row's gradient goes to the process that holds it.
    """
    if _batch_part is None:
        return x
    start, rows, size, _ = _batch_part
    zeros = lambda n: x.new_zeros(n, *x.shape[1:])
    return _Total.apply(torch.cat([zeros(start), x, zeros(size - start - rows)]))


def own_rows(whole):
    """This process's rows of a value of the whole global batch."""
    if _batch_part is None:
        return whole
    start, rows, _, _ = _batch_part
    return whole[start : start + rows]


def batch_gradients(grads):
    """
    The global batch's gradients (a list of tensors) from this process's: their mean over the
    processes (see _Total), in one collective for the list.
    """
    if _batch_part is None or not grads:
        return grads
    flat = _Total.apply(torch.cat([g.reshape(-1) for g in grads])) / _batch_processes[1]
    return [part.reshape(g.shape) for part, g in zip(flat.split([g.numel() for g in grads]), grads)]


# ---------------------------------------------------------------- reductions


def sum_of(values):
    """Σ over the modalities (`sum(k, x[k])`)."""
    if all(_is_number(v) for v in values):
        return builtins.sum(values)
    like = next(v for v in values if torch.is_tensor(v))
    total = _tensor(values[0], like).float()
    for v in values[1:]:
        total = total + _tensor(v, like).float()
    return total


def mean_of(values):
    return div(sum_of(values), len(values))


def max_of(values):
    result = values[0]
    for v in values[1:]:
        result = maximum(result, v)
    return result


def min_of(values):
    result = values[0]
    for v in values[1:]:
        result = minimum(result, v)
    return result


def concat_of(values):
    """`concat(j, ...)` in a fusion: features side by side."""
    return torch.cat(values, -1)


def sum_batch(x):
    return batch_total(torch.sum(x.float()))


def mean_batch(x):
    return _batch_mean(x.float())


def _batch_mean(x):
    """The mean of every element of a per-sample value [batch, ...] over the global batch."""
    if _batch_part is None:
        return torch.mean(x)
    return batch_total(torch.sum(x)) / (batch_size(x.shape[0]) * math.prod(x.shape[1:]))


# ---------------------------------------------------------------- outputs and losses


def log_sum_exp(z):
    """log Σ exp(z) over the last axis, kept; the peak is a constant, as in the tfjs trainer."""
    peak = torch.amax(z, -1, keepdim=True).detach()
    return peak + torch.log(torch.sum(torch.exp(z - peak), -1, keepdim=True))


def _log_softmax(z):
    return z - log_sum_exp(z)


def _one_hot(target, classes):
    return F.one_hot(target.long(), classes).float()


def _true_class_log_prob(logits, target):
    return torch.sum(_one_hot(target, logits.shape[-1]) * _log_softmax(logits), -1)


def _per_sample(x):
    """A per-position value ([batch, ...]) as one number per sample: the mean over every axis but the first."""
    return x if x.dim() <= 1 else torch.mean(x.reshape(x.shape[0], -1), 1)


def cross_entropy(logits, target):
    return -_batch_mean(_true_class_log_prob(logits, target))


def true_class_prob(logits, target):
    """softmax(z)[y] per sample."""
    return torch.exp(_true_class_log_prob(logits, target))


def accuracy(logits, target):
    return _batch_mean((torch.argmax(logits, -1) == target.long()).float())


def _regression_error(output, target):
    return output.reshape(-1) - target


def mean_absolute_error(output, target):
    return _batch_mean(torch.abs(_regression_error(output, target)))


def mean_squared_error(output, target):
    return _batch_mean(torch.square(_regression_error(output, target)))


def _overlaps(probabilities, target):
    """Per-class Σ p·t, Σ p and Σ t over every pixel of the global batch."""
    classes = probabilities.shape[-1]
    flat = probabilities.reshape(-1, classes)
    truth = _one_hot(target, classes).reshape(-1, classes)
    return batch_total(torch.stack([torch.sum(flat * truth, 0), torch.sum(flat, 0), torch.sum(truth, 0)])).unbind(0)


def dice(logits, target):
    """Dice of a segmentation on the batch, from each pixel's predicted class, over the classes present."""
    classes = logits.shape[-1]
    both, predicted, actual = _overlaps(_one_hot(torch.argmax(logits, -1), classes), target)
    denominator = predicted + actual
    present = (denominator > 0).float()
    per_class = 2 * both / torch.clamp(denominator, min=1)
    return torch.sum(per_class * present) / torch.clamp(torch.sum(present), min=1)


def dice_loss(logits, target):
    """Soft Dice loss: 1 − mean over classes of (2·Σ p·t + 1) / (Σ p + Σ t + 1), p the softmax."""
    both, predicted, actual = _overlaps(torch.exp(_log_softmax(logits)), target)
    return 1 - torch.mean((2 * both + 1) / (predicted + actual + 1))


def entropy(z):
    log_p = _log_softmax(z)
    return _per_sample(-torch.sum(torch.exp(log_p) * log_p, -1))


def logsumexp(z):
    return _per_sample(log_sum_exp(z).squeeze(-1))


def confidence(z):
    return _per_sample(torch.exp(torch.amax(z, -1) - log_sum_exp(z).squeeze(-1)))


def correct(z, target):
    return torch.argmax(z, -1) == target.long()


def nll(z, target):
    return _per_sample(-_true_class_log_prob(z, target))


def margin(z, target):
    p = torch.exp(_log_softmax(z))
    truth = _one_hot(target, z.shape[-1])
    mine = torch.sum(p * truth, -1)
    others = torch.amax(p - truth * 2, -1)
    return _per_sample(mine - others)


def kl(p, q):
    log_p = _log_softmax(p)
    return _per_sample(torch.sum(torch.exp(log_p) * (log_p - _log_softmax(q)), -1))


def js(p, q):
    a, b = torch.exp(_log_softmax(p)), torch.exp(_log_softmax(q))
    m = (a + b) / 2
    part = lambda x, log_x: torch.sum(x * (log_x - torch.log(m)), -1)
    return _per_sample((part(a, _log_softmax(p)) + part(b, _log_softmax(q))) / 2)


def mixture(p, q):
    return torch.log((torch.exp(_log_softmax(p)) + torch.exp(_log_softmax(q))) / 2)


def mean_squared_difference(a, b):
    return _per_sample(torch.square(a - b))


def cosine(a, b):
    """The cosine of two outputs or features, per sample."""
    x, y = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    norms = torch.sqrt(torch.sum(x * x, 1)) * torch.sqrt(torch.sum(y * y, 1))
    return torch.sum(x * y, 1) / (norms + 1e-12)


def normalize(x, axis=-1):
    """Each vector along `axis` scaled to unit L2 norm."""
    return x / (torch.sqrt(torch.sum(torch.square(x), axis, keepdim=True)) + 1e-12)


def distance(z, prototypes):
    """‖z_i − P_k‖ for every sample i and row k; differentiable at 0 too."""
    squared = torch.sum(z * z, 1, keepdim=True) - 2 * (z @ prototypes.T) + torch.sum(prototypes * prototypes, 1).reshape(1, -1)
    return torch.sqrt(torch.relu(squared) + 1e-12)


# ---------------------------------------------------------------- gradient statistics


def _total(g, f):
    """Σ of f over every element of a group, tensor by tensor: no copy of the group's elements into one vector."""
    return builtins.sum(torch.sum(f(t)) for t in g)


# Elements of a tensor a statistic reads at a time on a CPU, where nothing differentiates it (a
# `noise` action's std, the log's gradient norms, each step): a part's temporaries stay in the
# cache and in memory the allocator keeps, where a whole ResNet kernel's (9 MB) would be fresh pages
# every step. Each part's float32 sum is added to the others' in float64: over one encoder's 11.4 M
# weights the norm and std are then within 1.2e-7 (relative; a unit in float32's last place) of a
# float64 computation's.
_PART = 1 << 16


def _parts(g):
    """A group's elements as flat views: of _PART elements each on a CPU, one per tensor elsewhere (a GPU's allocator keeps its memory)."""
    for t in g:
        flat = t.reshape(-1)
        yield from flat.split(_PART) if flat.device.type == "cpu" else (flat,)


def _exact_total(g, f):
    """Σ of f over every element of a group, part by part (f: a part → its float32 sum), the parts' sums added in float64."""
    sums = [f(part) for part in _parts(g)]
    return torch.stack(sums).double().sum() if sums else torch.zeros((), dtype=torch.float64)


def _sum_squares(part):
    return torch.dot(part, part)


def _tracked(g):
    """Whether a derivative of a statistic of `g` is taken (a loss that reads gradients): then its formula is autograd's to follow."""
    return any(t.requires_grad for t in g)


def grad_norm(g):
    if _tracked(g):
        return torch.sqrt(_total(g, torch.square))
    return torch.sqrt(_exact_total(g, _sum_squares)).float()


def grad_norm1(g):
    if _tracked(g):
        return _total(g, torch.abs)
    return _exact_total(g, lambda part: torch.sum(torch.abs(part))).float()


def grad_mean(g):
    n = builtins.sum(t.numel() for t in g)
    if _tracked(g):
        return _total(g, lambda t: t) / n
    return (_exact_total(g, torch.sum) / n).float()


def grad_std(g):
    """Sample standard deviation over every element of the group (n − 1, as torch.std)."""
    n = builtins.sum(t.numel() for t in g)
    mean = grad_mean(g)
    if _tracked(g):
        return torch.sqrt(_total(g, lambda t: torch.square(t - mean)) / builtins.max(1, n - 1))
    # Two passes, as the equation reads (Σ t² − n·mean² would lose a spread small against the mean),
    # each part's deviations in a temporary of the part's size.
    return torch.sqrt(_exact_total(g, lambda part: _sum_squares(part - mean)) / builtins.max(1, n - 1)).float()


def grad_dot(a, b):
    return builtins.sum(torch.sum(x * y) for x, y in zip(a, b))


def grad_cos(a, b):
    return grad_dot(a, b) / (grad_norm(a) * grad_norm(b) + 1e-12)


def per_tensor(g, e):
    """`per_tensor(e)`: e of each parameter tensor alone, as a gradient-shaped value."""
    return _grouped_as((g,), [torch.ones_like(t) * e(t) for t in g])
