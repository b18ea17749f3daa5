import math

import torch

# Optimisers and learning-rate schedules: the arithmetic of runtime/optimizer.ts, operation for
# operation, so that a torch run and a tfjs run of one spec take the same steps (torch.optim's
# Adam groups its terms differently: equal in exact arithmetic, not in float32).

# Elements `Optimizer.apply` updates per batch of _foreach calls: few calls for a model's many small
# tensors, while a batch's temporaries (an Adam step holds three sets at once) stay a few tens of MB
# rather than several copies of the model.
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
        # One working tensor per parameter, kept from step to step (not state: a checkpoint leaves it
        # out): the decayed gradient and the step `g * rate` are made in it rather than in fresh
        # memory, whose page faults cost a CPU step more than the arithmetic.
        self.scratch = {}

    def option(self, name):
        """An option's value; an option the spec leaves out is 0 (no momentum, no weight decay)."""
        return float(self.spec["options"].get(name, 0))

    def slot(self, name, like):
        if name not in self.slots:
            self.slots[name] = torch.zeros_like(like)
        return self.slots[name]

    def _scratch(self, names, ps):
        """The working tensors of the parameters `names` (values `ps`)."""
        for name, p in zip(names, ps):
            if name not in self.scratch or self.scratch[name].device != p.device:
                self.scratch[name] = torch.empty_like(p)
        return [self.scratch[name] for name in names]

    @torch.no_grad()
    def apply(self, params, grads, lr_factor):
        """
        One step for every parameter in `grads` (name → gradient); `params` maps names to the
        model's parameters, updated in place. `lr_factor(name)` multiplies the learning rate: a
        number, or a scalar tensor (a rule's `scale lr`).

        Parameters whose rate is the same number (all of them, unless a rule scales some) are
        updated together, _BATCH elements at a time, by torch's _foreach ops (one call per
        operation for many tensors), in place where the tensor is the optimiser's; torch 1.13's
        _foreach ops take no tensor operand, so a tensor rate updates its parameter alone. Either
        way the float32 operations are the ones runtime/optimizer.ts makes, in its order:
        `param - g * rate` stays a product, then a difference (`add_(g, alpha=-rate)` would fuse
        them: other bits).
        """
        for name in grads:
            self.steps[name] = self.steps.get(name, 0) + 1
        lr = self.option("lr")
        # Names by their rate's bits (0.0 and -0.0 differ in a product's sign).
        by_rate = {}
        for name in grads:
            factor = lr_factor(name)
            if torch.is_tensor(factor):
                self._update([name], params, grads, factor * lr)
            else:
                rate = lr * factor
                by_rate.setdefault(float(rate).hex(), (rate, []))[1].append(name)
        for rate, names in by_rate.values():
            for batch in _batches(names, params):
                self._update(batch, params, grads, rate)

    def _update(self, names, params, grads, rate):
        """One step for the parameters `names` (at least one), whose learning rate is `rate`: one number, or one parameter's scalar tensor."""
        ps = [params[name] for name in names]
        gs = [grads[name] for name in names]
        decay = self.option("weight_decay")
        kind = self.spec["kind"]
        if decay and kind in ("sgd", "adam"):
            # gradient + param * decay, in the working tensors: the gradients are not the optimiser's to change.
            work = self._scratch(names, ps)
            for w, p in zip(work, ps):
                torch.mul(p, decay, out=w)
            torch._foreach_add_(work, gs)
            gs = work
        if kind == "sgd":
            momentum = self.option("momentum")
            if momentum:
                # The first step's buffer is the gradient itself; later steps' are buffer * momentum + g.
                keys = [f"{name}/momentum" for name in names]
                first = [key not in self.slots for key in keys]
                buffers = [self.slot(key, p) for key, p in zip(keys, ps)]
                for buffer, g, new in zip(buffers, gs, first):
                    if new:
                        buffer.copy_(g)
                later = [i for i, new in enumerate(first) if not new]
                if later:
                    torch._foreach_mul_([buffers[i] for i in later], momentum)
                    torch._foreach_add_([buffers[i] for i in later], [gs[i] for i in later])
                gs = buffers
            # g * rate in the working tensors (g may be them already: the decayed gradient, without momentum).
            work = self._scratch(names, ps)
            for w, g in zip(work, gs):
                torch.mul(g, rate, out=w)
            torch._foreach_sub_(ps, work)
            return
        beta1, beta2, eps = self.option("beta1"), self.option("beta2"), self.option("eps")
        ms = [self.slot(f"{name}/m", p) for name, p in zip(names, ps)]
        vs = [self.slot(f"{name}/v", p) for name, p in zip(names, ps)]
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
            decays = self._scratch(names, ps)
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
    """`names` in runs of up to _BATCH elements (a parameter larger than that alone)."""
    batch, size = [], 0
    for name in names:
        if batch and size + params[name].numel() > _BATCH:
            yield batch
            batch, size = [], 0
        batch.append(name)
        size += params[name].numel()
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
