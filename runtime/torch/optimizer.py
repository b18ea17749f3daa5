import math

import torch

# Optimisers and learning-rate schedules: the arithmetic of runtime/optimizer.ts, operation for
# operation, so that a torch run and a tfjs run of one spec take the same steps (torch.optim's
# Adam groups its terms differently: equal in exact arithmetic, not in float32).


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

    def option(self, name):
        """An option's value; an option the spec leaves out is 0 (no momentum, no weight decay)."""
        return float(self.spec["options"].get(name, 0))

    def slot(self, name, like):
        if name not in self.slots:
            self.slots[name] = torch.zeros_like(like)
        return self.slots[name]

    @torch.no_grad()
    def apply(self, params, grads, lr_factor):
        """
        One step for every parameter in `grads` (name → gradient); `params` maps names to the
        model's parameters, updated in place. `lr_factor(name)` multiplies the learning rate: a
        number, or a scalar tensor (a rule's `scale lr`).
        """
        for name in grads:
            self.steps[name] = self.steps.get(name, 0) + 1
        lr = self.option("lr")
        decay = self.option("weight_decay")
        kind = self.spec["kind"]
        for name, gradient in grads.items():
            param = params[name]
            factor = lr_factor(name)
            rate = factor * lr if torch.is_tensor(factor) else lr * factor
            if kind == "sgd":
                g = gradient + param * decay if decay else gradient
                momentum = self.option("momentum")
                if momentum:
                    key = f"{name}/momentum"
                    first = key not in self.slots
                    buffer = self.slot(key, param)
                    buffer.copy_(g if first else buffer * momentum + g)
                    g = buffer
                param.copy_(param - g * rate)
            else:
                beta1, beta2, eps = self.option("beta1"), self.option("beta2"), self.option("eps")
                g = gradient + param * decay if kind == "adam" and decay else gradient
                m = self.slot(f"{name}/m", param)
                v = self.slot(f"{name}/v", param)
                m.copy_(m * beta1 + g * (1 - beta1))
                v.copy_(v * beta2 + g.square() * (1 - beta2))
                t = self.steps[name]
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                update = param - m_hat / (v_hat.sqrt() + eps) * rate
                if kind == "adamw" and decay:
                    update = update - param * rate * decay
                param.copy_(update)

    def state(self):
        """What a checkpoint keeps: each parameter's step count, and copies of the slots."""
        return {"steps": dict(self.steps), "slots": {name: slot.detach().clone() for name, slot in self.slots.items()}}

    def restore(self, state):
        """The state `state()` returned; its slot tensors must already be on the parameters' device."""
        self.steps = dict(state["steps"])
        self.slots = {name: slot.detach().clone() for name, slot in state["slots"].items()}


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
