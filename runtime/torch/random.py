import contextlib
import math

import numpy as np
import torch

# Seeded randomness computed in plain Python, draw for draw the same as runtime/random.ts, so that a
# torch trainer starts from the weights, data and shuffles of the tfjs trainer with the same seed.
# JavaScript's 32-bit integer arithmetic (Math.imul, >>>) is reproduced with Python ints masked to
# 32 bits: the bits are the same whether JavaScript reads them as signed or unsigned.

_MASK32 = 0xFFFFFFFF
# mulberry32's shifts and masks as numpy uint32 scalars, so that its arithmetic stays in uint32.
_U1, _U7, _U14, _U15, _U61 = (np.uint32(k) for k in (1, 7, 14, 15, 61))
# 2**32: a uniform is a state over it.
_TWO_32 = 4294967296.0
# Pairs of uniforms `normals` turns into draws at a time: few enough that a block's arrays stay in the
# CPU's cache, enough that numpy's cost per call does not show.
_BLOCK = 1 << 15
# The same on an accelerator (`_normals_torch`): a bound on the int64 temporaries' memory, a few
# hundred MB, rather than a matter of speed.
_DEVICE_BLOCK = 1 << 22
# How far, relatively, torch's float64 Box–Muller may stray from numpy's before `_box_muller_torch`
# asks numpy. Over every uniform mulberry32 gives, torch's log on an AVX2 CPU is within 1 unit in the
# last place of numpy's (AVX-512) and its cos within 4; CUDA documents 1 and 2 from the true value.
# A draw then differs by under 2**-49; this is 500 times more.
_SLACK = 2.0**-40


def _imul(a, b):
    """Math.imul: the low 32 bits of the product."""
    return (a * b) & _MASK32


def _mulberry32_(t, work):
    """
    mulberry32's output for the states t (a numpy uint32 array, whose arithmetic wraps as Math.imul
    and >>> do), made in t itself; `work`, two arrays of t's shape, holds the intermediate terms.
    In place rather than in fresh arrays: a fresh array of a block's size can be fresh memory from
    the allocator, whose page faults took 20× the time of the arithmetic in a fresh process.
    """
    a, b = work
    np.right_shift(t, _U15, out=a)
    a ^= t
    t |= _U1
    t *= a  # (t ^ t >>> 15) * (t | 1)
    np.right_shift(t, _U7, out=a)
    a ^= t
    np.bitwise_or(t, _U61, out=b)
    a *= b
    a += t
    t ^= a  # t ^ (t + (t ^ t >>> 7) * (t | 61))
    np.right_shift(t, _U14, out=a)
    t ^= a
    return t


def _box_muller_(u, std):
    """
    Normal draws (float64) from uniforms u (float64, 2 × n: the radii's row, then the angles'), times
    std, made in u's first row, which is returned (u is used up). numpy's log and cos here make the
    reference bits: on an accelerator `_box_muller_torch` defers to this function wherever its own
    could round differently. The operations are those of sqrt(-2 log u₀) · cos(2π u₁) · std.
    """
    radius, angle = u[0], u[1]
    np.maximum(radius, 1e-12, out=radius)
    np.log(radius, out=radius)
    radius *= -2
    np.sqrt(radius, out=radius)
    angle *= 2 * np.pi
    np.cos(angle, out=angle)
    radius *= angle
    radius *= std
    return radius


def name_hash(text):
    """FNV-1a of a name, as runtime/random.ts's nameHash: the seed of a stream that belongs to a named thing (a parameter's noise, a layer's dropout)."""
    h = 2166136261
    for c in text:
        h = ((h ^ ord(c)) * 16777619) & _MASK32
    return h


class Random:
    """mulberry32, seeded as runtime/random.ts seeds it: the tfjs trainer's draws, bit for bit."""

    # Draws with the bits of the tfjs trainer's: in its layout, its order of parameters (`--rng shared`).
    native = False

    def __init__(self, seed):
        self._state = (int(seed) & _MASK32) ^ 0x9E3779B9
        for _ in range(4):
            self.uniform()

    def uniform(self):
        """Uniform on [0, 1)."""
        self._state = t = (self._state + 0x6D2B79F5) & _MASK32
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & _MASK32
        return (t ^ (t >> 14)) / 4294967296

    def normal(self):
        """Box–Muller, the first uniform for the radius, the second for the angle."""
        u = max(self.uniform(), 1e-12)
        return math.sqrt(-2 * math.log(u)) * math.cos(2 * math.pi * self.uniform())

    def uniforms(self, n):
        """
        The next n uniforms at once. mulberry32's state only grows by a constant, so the k-th
        state is known without the ones before: the mixing is done on all of them together, in
        numpy's uint32 arithmetic, which wraps as Math.imul and >>> do (a ResNet's millions of
        weights in a fraction of a second).
        """
        t = np.arange(1, n + 1, dtype=np.uint32)
        t *= np.uint32(0x6D2B79F5)
        t += np.uint32(self._state)
        self._state = (self._state + n * 0x6D2B79F5) & _MASK32
        return _mulberry32_(t, (np.empty_like(t), np.empty_like(t))) / _TWO_32

    def uniforms_on(self, n, device, part=None):
        """`uniforms(n)` as a float64 tensor on `device`; with `part` (start, stop), those of them alone."""
        drawn = self.uniforms(n)
        return torch.from_numpy(drawn if part is None else drawn[part[0] : part[1]]).to(device)

    def normals(self, n, std=1.0, out=None):
        """
        n normal draws times std (Box–Muller on pairs of uniforms, as `normal`), rounded to float32 as
        the tfjs trainer stores them; in `out` (a float32 array of n), if given. As in `uniforms`,
        the states are known up front; the draws are made _BLOCK pairs at a time, the radii's
        uniforms and the angles' each in a contiguous row, in the same few arrays for every block,
        so that the dozen passes over them stay in the cache and touch no fresh memory: the same
        bits as whole-array passes (numpy's functions compute each element alone), 10× faster than
        passes in fresh arrays, whose page faults cost more than the arithmetic (11.4 M draws, a
        ResNet-18's weights, in a fresh process: 0.12 s against 1.2 s).
        """
        drawn = np.empty(n, np.float32) if out is None else out
        block = min(n, _BLOCK)
        # The states of a block's uniforms less its first state: row 0 the radii's (odd draws), row 1 the angles'.
        offsets = np.ascontiguousarray((np.arange(1, 2 * block + 1, dtype=np.uint32) * np.uint32(0x6D2B79F5)).reshape(-1, 2).T)
        states, work, extra = (np.empty((2, block), np.uint32) for _ in range(3))
        uniforms = np.empty((2, block))
        for start in range(0, n, _BLOCK):
            count = min(_BLOCK, n - start)
            t = states[:, :count]
            np.add(offsets[:, :count], np.uint32((self._state + 2 * start * 0x6D2B79F5) & _MASK32), out=t)
            u = uniforms[:, :count]
            np.divide(_mulberry32_(t, (work[:, :count], extra[:, :count])), _TWO_32, out=u)
            drawn[start : start + count] = _box_muller_(u, std)
        self._state = (self._state + 2 * n * 0x6D2B79F5) & _MASK32
        return drawn

    def normals_on(self, n, device, std=1.0, host=None):
        """
        `normals(n, std)` as a float32 tensor on `device`, with the same bits. On the CPU it is
        numpy's array (torch there is 3–4× slower: int64 for uint32, slower log and cos), drawn in
        `host` (a float32 array of n) if given; on an accelerator the draws are made there
        (`_normals_torch`), so that a GPU run's noise does not cross from the host.
        """
        if torch.device(device).type == "cpu":
            return torch.from_numpy(self.normals(n, std, host))
        drawn = _normals_torch(self._state, n, std, device)
        self._state = (self._state + 2 * n * 0x6D2B79F5) & _MASK32
        return drawn

    def permutation(self, n):
        """A Fisher–Yates shuffle of range(n)."""
        order = list(range(n))
        for i in range(n - 1, 0, -1):
            j = math.floor(self.uniform() * (i + 1))
            order[i], order[j] = order[j], order[i]
        return order

    @property
    def snapshot(self):
        """The generator's state, for checkpoints."""
        return self._state

    @classmethod
    def restore(cls, state):
        random = cls(0)
        random._state = int(state) & _MASK32
        return random


class TorchRandom:
    """
    A stream of torch's own generator, seeded as a Random is (`--rng torch`): torch's kernels make
    the draws on the device of the tensor they are for, several times faster than Random's, which
    reproduce the tfjs trainer's bits in float64 arithmetic; a GPU run's draws never leave it. One
    seed gives the same draws on one kind of device with one build of torch, not the tfjs trainer's.
    """

    # Drawn in torch's layout: no tfjs layout or order to follow.
    native = True

    def __init__(self, seed):
        self._seed = int(seed) & _MASK32
        # One generator per device, made at its first draw there.
        self._generators = {}

    def _on(self, device):
        device = torch.device(device)
        if str(device) not in self._generators:
            self._generators[str(device)] = torch.Generator(device=device).manual_seed(self._seed)
        return self._generators[str(device)]

    def uniform(self):
        """Uniform on [0, 1)."""
        return float(torch.rand((), dtype=torch.float64, generator=self._on("cpu")))

    def uniforms_on(self, n, device, part=None):
        """n uniforms as a float64 tensor on `device`; with `part` (start, stop), those of them alone (all n are drawn, as every process draws them)."""
        drawn = torch.rand(n, dtype=torch.float64, generator=self._on(device), device=device)
        return drawn if part is None else drawn[part[0] : part[1]]

    def normals_into(self, out):
        """Standard normal draws in the float32 tensor `out`, which is returned."""
        return out.normal_(generator=self._on(out.device))


class StepRandom:
    """
    The random draws a rule makes in one step (`uniform()`, `bernoulli(p)`, `dropout(x, p)`), as
    runtime/step-random.ts makes them: each call of the spec has its own stream, seeded by the run's
    seed, the step (or a key such as the epoch) and the call, so that a draw is the same wherever the
    step evaluates it, in a resumed run, and in the tfjs trainer.
    """

    def __init__(self, seed, step, streams=Random):
        self.seed = seed
        self.step = step
        # The generator of the run's draws: Random (the tfjs trainer's bits) or TorchRandom (`--rng torch`).
        self.streams = streams
        # (first row, rows of the step's batch) while a per-sample pass runs (`sample_pass`): its draws
        # per sample or element are that row's of the batch's.
        self.rows = None

    @contextlib.contextmanager
    def sample_pass(self, first, total):
        """Inside the block, draws are those of the pass over row `first` of the step's `total`."""
        saved, self.rows = self.rows, (first, total)
        try:
            yield
        finally:
            self.rows = saved

    def _stream(self, id, key=None):
        h = 2166136261
        for part in (self.seed, self.step if key is None else key, id):
            h = _imul(h ^ (int(part) & _MASK32), 16777619)
        return self.streams(h)

    def uniform(self, id, key=None):
        """Uniform on [0, 1): one number per step, or per `key` (`uniform(epoch)`: one per epoch)."""
        return self._stream(id, None if key is None else math.floor(key)).uniform()

    def bernoulli(self, id, p):
        """1 with probability p, else 0: one draw for a number, one per element for a tensor or each tensor of a list."""
        random = self._stream(id)
        if isinstance(p, (int, float)):
            return 1 if random.uniform() < p else 0
        if isinstance(p, (list, tuple)):
            return [(_uniform_like(random, t) < t).float() for t in p]
        return (_uniform_rows(random, p, self.rows) < p).float()

    def layer_dropout(self, layer, x, rate, first, total):
        """
        An encoder layer's `dropout` option on its output x ([rows, ...]), as runtime/step-random.ts's
        layerDropout: each element zeroed with probability `rate`, the others scaled by 1/(1 − rate),
        drawn from the layer's own stream for the step's whole batch of `total` rows, of which x's
        start at row `first` (a per-sample pass's one row; a process's rows of a shared batch).
        """
        # The layer's stream id: its name's hash with the top bit set, apart from the spec's calls (numbered from 0).
        u = _row_draws(self._stream(name_hash(layer) | 0x80000000), x, (first, total))
        # Kept elements × the float32 1/(1 − rate), the others 0 (float64 u against the rate, as the tfjs trainer compares).
        return x * (u >= rate).float().mul_(float(np.float32(1 / (1 - rate))))

    def dropout(self, id, x, p):
        """x with each element zeroed with probability p (no rescaling)."""
        return x * (_uniform_rows(self._stream(id), x, self.rows) >= p).float()


def _imul_torch(a, b):
    """
    Math.imul on int64 tensors holding uint32 values: the low 32 bits of a·b, summed from a times b's
    low 16 bits and a times its high 16 bits, neither of which overflows int64 (a·b itself can).
    """
    return (a * (b & 0xFFFF) + (((a * (b >> 16)) & 0xFFFF) << 16)) & _MASK32


def _mulberry32_torch(t):
    """`_mulberry32_` on an int64 tensor of uint32 states (torch 1.13 has no uint32 arithmetic)."""
    t = _imul_torch(t ^ (t >> 15), t | 1)
    t = t ^ ((t + _imul_torch(t ^ (t >> 7), t | 61)) & _MASK32)
    return t ^ (t >> 14)


def _normals_torch(state, n, std, device):
    """`Random.normals(n, std)` of a generator in `state`, made with torch on `device`, _DEVICE_BLOCK pairs at a time."""
    drawn = torch.empty(n, dtype=torch.float32, device=device)
    offsets = (torch.arange(1, 2 * min(n, _DEVICE_BLOCK) + 1, dtype=torch.int64, device=device) * 0x6D2B79F5).reshape(-1, 2).t()
    for start in range(0, n, _DEVICE_BLOCK):
        count = min(_DEVICE_BLOCK, n - start)
        states = (offsets[:, :count] + ((state + 2 * start * 0x6D2B79F5) & _MASK32)) & _MASK32
        drawn[start : start + count] = _box_muller_torch(_mulberry32_torch(states).double() / 4294967296, std)
    return drawn


def _box_muller_torch(u, std):
    """
    `_box_muller_` in torch's float64 on u's device, with numpy's bits. The device's log and cos are
    not numpy's: their results may differ in the last bits, which changes the float32 draw where
    the float64 one lies within a hair of halfway between two float32s. Those draws (2 in 100,000)
    are the ones whose rounding a relative error of _SLACK could change; numpy redoes them.
    """
    radius = torch.sqrt(-2 * torch.log(torch.clamp(u[0], min=1e-12)))
    exact = radius * torch.cos(2 * math.pi * u[1]) * std
    drawn = exact.float()
    unsure = torch.nonzero((exact * (1 - _SLACK)).float() != (exact * (1 + _SLACK)).float()).squeeze(1)
    if len(unsure):
        drawn[unsure] = torch.from_numpy(_box_muller_(u[:, unsure].cpu().numpy(), std).astype(np.float32)).to(u.device)
    return drawn


def _uniform_like(random, t):
    """One uniform per element of t, in t's row-major order, as float32 (as tfjs holds them), on t's device."""
    return random.uniforms_on(t.numel(), t.device).float().reshape(t.shape)


def _row_draws(random, t, rows):
    """
    Uniforms (float64, t's shape and device) for t ([rows, ...]): with `rows` (first row, rows in
    all), the whole batch's, t's rows of them, so that a sample's draw is the same in a pass over
    some rows (one sample's; a process's) as in the batch's.
    """
    first, total = rows
    width = math.prod(t.shape[1:])
    return random.uniforms_on(total * width, t.device, part=(first * width, (first + t.shape[0]) * width)).reshape(tuple(t.shape))


def _uniform_rows(random, t, rows):
    """`_uniform_like`, for a pass over the rows `rows` of the batch (None: t's rows are all of it)."""
    if rows is None or t.dim() == 0:
        return _uniform_like(random, t)
    return _row_draws(random, t, rows).float()
