import numpy as np
import torch
import torch.nn.functional as F


class History:
    """
    Values carried from one step to the next: `prev(x, init)`, `delta(x)`, `ema(x, beta)`,
    `class_mean`, the projectors of `owm`; as runtime/history.ts, slot for slot (a checkpoint of
    either target names its slots alike). Reads see the previous step; writes wait for `advance()`,
    which the loop calls after the optimiser step, so every rule value of a step sees one history.
    """

    def __init__(self, device="cpu"):
        self.device = device
        self.values = {}
        self.pending = {}

    @staticmethod
    def _key(slot, index, ago=1):
        key = f"{slot}:{index}" if index else f"{slot}"
        return key if ago == 1 else f"{key}@{ago}"

    def read(self, slot, index, init, ago=1):
        """The value written `ago` steps back, or `init` before that many were written."""
        value = self.values.get(self._key(slot, index, ago))
        return value if value is not None else torch.tensor(float(init), device=self.device)

    def write(self, slot, index, value, depth=1):
        """Records a value; with `depth` n, the n last ones are kept (the older ones shift back by one)."""
        for ago in range(int(depth), 1, -1):
            older = self.values.get(self._key(slot, index, ago - 1))
            if older is not None:
                self.pending[self._key(slot, index, ago)] = older
        value = value.detach().clone() if torch.is_tensor(value) else torch.tensor(float(value), device=self.device)
        self.pending[self._key(slot, index)] = value

    def delta(self, slot, index, value, init):
        """x − (the previous step's x, or `init` on the first step); a gradient-shaped x tensor by tensor."""
        if isinstance(value, list):
            return _grouped_as((value,), [self.delta(slot, f"{index}#{i}", t, init) for i, t in enumerate(value)])
        previous = self.read(slot, index, init)
        self.write(slot, index, value)
        return value - previous

    def ema(self, slot, index, value, beta):
        """β·ema + (1 − β)·x; the first step's ema is x itself; a gradient-shaped x tensor by tensor."""
        if isinstance(value, list):
            return _grouped_as((value,), [self.ema(slot, f"{index}#{i}", t, beta) for i, t in enumerate(value)])
        previous = self.values.get(self._key(slot, index))
        current = value if torch.is_tensor(value) else torch.tensor(float(value), device=self.device)
        following = current if previous is None else previous * beta + current * (1 - beta)
        self.write(slot, index, following)
        return following

    def class_mean(self, slot, index, features, target, momentum, classes):
        """
        Running per-class mean of features: a class present in the batch moves to
        momentum·previous + (1 − momentum)·(its batch mean), or starts at it; the others keep their
        value (zero until first seen). A constant for differentiation.
        """
        z = features.detach()
        one_hot = F.one_hot(target.long(), classes).float()
        counts = one_hot.sum(0).reshape(-1, 1)
        present = counts > 0
        mean = (one_hot.T @ z) / torch.clamp(counts, min=1)
        previous = self.values.get(self._key(slot, index))
        seen = self.values.get(self._key(slot, f"{index}#seen"))
        if previous is not None and seen is not None:
            blended = torch.where(seen.bool().expand(mean.shape), previous * momentum + mean * (1 - momentum), mean)
        else:
            blended = mean
        following = torch.where(present.expand(mean.shape), blended, previous if previous is not None else torch.zeros_like(mean))
        self.write(slot, index, following)
        self.write(slot, f"{index}#seen", torch.logical_or(seen.bool(), present).float() if seen is not None else present.float())
        return following

    def owm(self, slot, index, g, x, alpha):
        """
        `owm(g, x, alpha)`: each weight gradient of g projected by its own projector P over the
        layer's inputs, updated first with the batch mean r of x: k = P·r,
        P ← P − k·kᵀ/(alpha + rᵀ·k), then P / ‖P‖_F. P starts as the identity. A torch weight is
        [outputs, inputs] (tfjs's is its transpose), so the projection acts on its rows.
        """
        r = x.detach().mean(0).reshape(-1, 1)
        width = r.shape[0]
        projected = []
        for i, t in enumerate(g):
            if t.dim() != 2 or t.shape[1] != width:
                raise ValueError(f"owm: a gradient of shape {list(t.shape)} is not of a layer whose inputs have the {width} features given")
            key = f"{index}#{i}"
            previous = self.values.get(self._key(slot, key))
            if previous is None:
                previous = torch.eye(width, device=r.device)
            k = previous @ r
            updated = previous - (k @ k.T) / (alpha + r.T @ k)
            projector = updated / torch.linalg.norm(updated)
            self.write(slot, key, projector)
            projected.append((projector @ t.T).T)
        return _grouped_as((g,), projected)

    def advance(self):
        """Makes this step's writes what the next step reads."""
        self.values.update(self.pending)
        self.pending = {}

    def discard(self):
        """Drops the writes of a step that did not complete."""
        self.pending = {}

    def state(self):
        """Every slot as {shape, values}, as the tfjs trainer's checkpoints keep it."""
        return {key: {"shape": list(v.shape), "values": v.detach().cpu().reshape(-1).tolist()} for key, v in self.values.items()}

    def restore(self, state):
        self.values = {
            key: torch.tensor(np.asarray(s["values"], dtype=np.float32).reshape(s["shape"]), device=self.device) for key, s in state.items()
        }
        self.pending = {}
