import math

import torch

# Optimisers and learning-rate schedules: the arithmetic of runtime/optimizer.ts, operation for
# operation, so that a torch run and a tfjs run of one spec take the same steps (torch.optim's
# Adam groups its terms differently: equal in exact arithmetic, not in float32).

# Elements `Optimizer.apply` updates per batch of _foreach calls. On a CPU the batch's every
# operation reads what the one before it wrote while that is still in the cache, and its working
# tensors are one small scratch tensor, always in the cache: the update reads each parameter, its
# gradient and its momentum from memory once, where whole-model passes (six for SGD with momentum and
# weight decay) would each read them again and write a working tensor of the model's size. Elsewhere
# a batch bounds the temporaries' memory (an Adam step holds three sets at once) at a few tens of MB,
# and few calls cover a model's many small tensors.
_CPU_BATCH = 1 << 18
_BATCH = 1 << 22


class Optimizer:
    """
    SGD (PyTorch semantics: weight decay added to the gradient, then momentum; the first step's
    momentum buffer is the gradient itself), Adam (weight decay added to the gradient) and AdamW
    (decoupled weight decay), on named parameters.

    Each parameter counts its own steps: a step may update only some parameters (a modality's turn
    updates what its loss reaches), and Adam's bias correction then follows each one's count, as
    PyTorch's optimisers do. The state is plain tensors and counts, so a checkpoint restores it
    exactly.
    """

    def __init__(self, component):
        """`component`: the spec's `optimizer` ({kind: sgd|adam|adamw, options: {lr, momentum, ...}})."""
        if component["kind"] not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer {component['kind']}")
        self.spec = component
        # Momentum buffers and moments, by `<parameter>/momentum`, `<parameter>/m`, `<parameter>/v`.
        self.slots = {}
        # Updates so far, by parameter name.
        self.steps = {}
        # Working memory per device and type, kept from step to step (not state: a checkpoint leaves
        # it out): a batch's decayed gradients and steps `g * rate` are made in it rather than in
        # fresh memory, whose page faults cost a CPU step more than the arithmetic.
        self.scratch = {}

    def option(self, name):
        """An option's value; an option the spec leaves out is 0 (no momentum, no weight decay)."""
        return float(self.spec["options"].get(name, 0))

    def slot(self, name, like):
        if name not in self.slots:
            self.slots[name] = torch.zeros_like(like)
        return self.slots[name]

    def _scratch(self, ps):
        """Working tensors shaped as `ps`, one after another in the scratch tensor of their device and type."""
        total = sum(p.numel() for p in ps)
        key = (ps[0].device, ps[0].dtype)
        if key not in self.scratch or self.scratch[key].numel() < total:
            self.scratch[key] = torch.empty(total, dtype=ps[0].dtype, device=ps[0].device)
        work, at = [], 0
        for p in ps:
            work.append(self.scratch[key][at : at + p.numel()].view(p.shape))
            at += p.numel()
        return work

    @torch.no_grad()
    def apply(self, params, grads, lr_factor):
        """
        One step for every parameter in `grads` (name → gradient); `params` maps names to the
        model's parameters, updated in place. `lr_factor(name)` multiplies the learning rate: a
        number, or a scalar tensor (a rule's `scale lr`).

        Parameters whose rate is the same number (all of them, unless a rule scales some) are
        updated together, a batch of elements at a time (_CPU_BATCH, _BATCH; a large parameter
        split by rows across batches), by torch's _foreach ops (one call per operation for many
        tensors), in place where the tensor is the optimiser's; torch 1.13's _foreach ops take no
        tensor operand, so a tensor rate updates its parameter alone. Either way the float32
        operations are the ones runtime/optimizer.ts makes, in its order: `param - g * rate`
        stays a product, then a difference (`add_(g, alpha=-rate)` would fuse them: other bits).
        """
        for name in grads:
            self.steps[name] = self.steps.get(name, 0) + 1
        # The parameters SGD steps for the first time: their momentum buffer is the gradient itself.
        first = {name for name in grads if f"{name}/momentum" not in self.slots}
        lr = self.option("lr")
        # Names by their rate's bits (0.0 and -0.0 differ in a product's sign).
        by_rate = {}
        for name in grads:
            factor = lr_factor(name)
            if torch.is_tensor(factor):
                self._update([(name, None)], params, grads, factor * lr, first)
            else:
                rate = lr * factor
                by_rate.setdefault(float(rate).hex(), (rate, []))[1].append(name)
        for rate, names in by_rate.values():
            for batch in _batches(names, params):
                self._update(batch, params, grads, rate, first)

    def _update(self, parts, params, grads, rate, first):
        """
        One step for `parts` (at least one): (parameter name, its rows, or None for all of it).
        `rate`: the learning rate, one number, or one parameter's scalar tensor. `first`: the
        names of the parameters SGD steps for the first time.
        """
        names = [name for name, _ in parts]
        cut = lambda tensor, rows: tensor if rows is None else tensor[rows]
        ps = [cut(params[name], rows) for name, rows in parts]
        gs = [cut(grads[name], rows) for name, rows in parts]
        decay = self.option("weight_decay")
        kind = self.spec["kind"]
        if decay and kind in ("sgd", "adam"):
            # gradient + param * decay, in the working tensors: the gradients are not the optimiser's to change.
            work = self._scratch(ps)
            for w, p in zip(work, ps):
                torch.mul(p, decay, out=w)
            torch._foreach_add_(work, gs)
            gs = work
        if kind == "sgd":
            momentum = self.option("momentum")
            if momentum:
                # The first step's buffer is the gradient itself; later steps' are buffer * momentum + g.
                buffers = [cut(self.slot(f"{name}/momentum", params[name]), rows) for name, rows in parts]
                for buffer, g, name in zip(buffers, gs, names):
                    if name in first:
                        buffer.copy_(g)
                later = [i for i, name in enumerate(names) if name not in first]
                if later:
                    torch._foreach_mul_([buffers[i] for i in later], momentum)
                    torch._foreach_add_([buffers[i] for i in later], [gs[i] for i in later])
                gs = buffers
            # g * rate in the working tensors (g may be them already: the decayed gradient, without momentum).
            work = self._scratch(ps)
            for w, g in zip(work, gs):
                torch.mul(g, rate, out=w)
            torch._foreach_sub_(ps, work)
            return
        beta1, beta2, eps = self.option("beta1"), self.option("beta2"), self.option("eps")
        ms = [cut(self.slot(f"{name}/m", params[name]), rows) for name, rows in parts]
        vs = [cut(self.slot(f"{name}/v", params[name]), rows) for name, rows in parts]
        # m = m * beta1 + g * (1 - beta1); v = v * beta2 + g² * (1 - beta2) (g * g: the bits of g.square()).
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, torch._foreach_mul(gs, 1 - beta1))
        squares = torch._foreach_mul(gs, gs)
        torch._foreach_mul_(squares, 1 - beta2)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_add_(vs, squares)
        # The bias corrections follow each parameter's own count, so they divide one tensor at a time
        # (and torch on CUDA divides by a number as a product with its reciprocal; _foreach_div does not).
        m_hats = [m / (1 - beta1 ** self.steps[name]) for m, name in zip(ms, names)]
        v_hats = [v / (1 - beta2 ** self.steps[name]) for v, name in zip(vs, names)]
        # param - m_hat / (sqrt(v_hat) + eps) * rate, and for AdamW then - param * rate * decay (of the parameter before this step).
        torch._foreach_sqrt_(v_hats)
        torch._foreach_add_(v_hats, eps)
        torch._foreach_div_(m_hats, v_hats)
        _times_(m_hats, rate)
        decays = None
        if kind == "adamw" and decay:
            # In the working tensors, which AdamW's gradient leaves unused.
            decays = self._scratch(ps)
            for d, p in zip(decays, ps):
                torch.mul(p, rate, out=d)
            torch._foreach_mul_(decays, decay)
        torch._foreach_sub_(ps, m_hats)
        if decays is not None:
            torch._foreach_sub_(ps, decays)

    def state(self):
        """What a checkpoint keeps: each parameter's step count, and copies of the slots."""
        return {"steps": dict(self.steps), "slots": {name: slot.detach().clone() for name, slot in self.slots.items()}}

    def restore(self, state):
        """The state `state()` returned; its slot tensors must already be on the parameters' device."""
        self.steps = dict(state["steps"])
        self.slots = {name: slot.detach().clone() for name, slot in state["slots"].items()}


def _batches(names, params):
    """
    `names`' parameters in batches of (name, rows) parts, up to _CPU_BATCH elements each on a CPU
    (_BATCH elsewhere): a parameter larger than that is split by its first axis (rows: a slice,
    a view of any tensor of its shape), one smaller goes whole (rows None) with others.
    """
    batch, size = [], 0
    for name in names:
        p = params[name]
        limit = _CPU_BATCH if p.device.type == "cpu" else _BATCH
        if p.dim() == 0 or p.numel() <= limit:
            parts = [(name, None)]
        else:
            # Rows per part: at least one, however large a row.
            step = max(1, limit // (p.numel() // p.shape[0]))
            parts = [(name, slice(start, start + step)) for start in range(0, p.shape[0], step)]
        for part in parts:
            n = p.numel() if part[1] is None else p[part[1]].numel()
            if batch and size + n > limit:
                yield batch
                batch, size = [], 0
            batch.append(part)
            size += n
    if batch:
        yield batch


def _times_(tensors, rate):
    """Each tensor times the learning rate, in place: by one _foreach call, or one by one for a scalar tensor (which _foreach_mul does not take)."""
    if torch.is_tensor(rate):
        for t in tensors:
            t.mul_(rate)
    else:
        torch._foreach_mul_(tensors, rate)


def schedule_factor(schedule, epoch, epochs):
    """
    The learning rate's factor in `epoch` (0-based) of `epochs` under the spec's `schedule`:
    `step` multiplies by gamma every `every` epochs, `cosine` falls from 1 to `min` over the run.
    `plateau` follows the validation metric, so the loop keeps its factor; any other kind is 1.
    """
    options = schedule["options"]
    if schedule["kind"] == "step":
        return float(options["gamma"]) ** math.floor(epoch / float(options["every"]))
    if schedule["kind"] == "cosine":
        low = float(options.get("min", 0))
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))
    return 1.0
