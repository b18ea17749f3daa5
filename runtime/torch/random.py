import math

import numpy as np
import torch

# Seeded randomness computed in plain Python, draw for draw the same as runtime/random.ts, so that a
# torch trainer starts from the weights, data and shuffles of the tfjs trainer with the same seed.
# JavaScript's 32-bit integer arithmetic (Math.imul, >>>) is reproduced with Python ints masked to
# 32 bits: the bits are the same whether JavaScript reads them as signed or unsigned.

_MASK32 = 0xFFFFFFFF


def _imul(a, b):
    """Math.imul: the low 32 bits of the product."""
    return (a * b) & _MASK32


class Random:
    """mulberry32, seeded as runtime/random.ts seeds it."""

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
        t = (t ^ (t >> np.uint32(15))) * (t | np.uint32(1))
        t ^= t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61))
        return (t ^ (t >> np.uint32(14))) / 4294967296

    def normals(self, n, std=1.0):
        """n normal draws times std (Box–Muller on pairs of uniforms, as `normal`), rounded to float32 as the tfjs trainer stores them."""
        u = self.uniforms(2 * n).reshape(n, 2)
        radius = np.sqrt(-2 * np.log(np.maximum(u[:, 0], 1e-12)))
        return (radius * np.cos(2 * np.pi * u[:, 1]) * std).astype(np.float32)

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


class StepRandom:
    """
    The random draws a rule makes in one step (`uniform()`, `bernoulli(p)`, `dropout(x, p)`), as
    runtime/step-random.ts makes them: each call of the spec has its own stream, seeded by the run's
    seed, the step (or a key such as the epoch) and the call, so that a draw is the same wherever the
    step evaluates it, in a resumed run, and in the tfjs trainer.
    """

    def __init__(self, seed, step):
        self.seed = seed
        self.step = step

    def _stream(self, id, key=None):
        h = 2166136261
        for part in (self.seed, self.step if key is None else key, id):
            h = _imul(h ^ (int(part) & _MASK32), 16777619)
        return Random(h)

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
        return (_uniform_like(random, p) < p).float()

    def dropout(self, id, x, p):
        """x with each element zeroed with probability p (no rescaling)."""
        return x * (_uniform_like(self._stream(id), x) >= p).float()


def _uniform_like(random, t):
    """One uniform per element of t, in t's row-major order, as float32 (as tfjs holds them)."""
    return torch.from_numpy(random.uniforms(t.numel()).astype(np.float32)).reshape(t.shape).to(t.device)
