import torch


class RuleContext:
    """
    What every rule sees, a step's (`StepContext`) and an epoch's (`EpochContext`), as
    runtime/rule-context.ts: the modalities, the parameters as they are now, as training began
    (`init`), newly drawn (`fresh`), or as an earlier stage ended them, and `set`s, made together
    once the rule has run so that each reads the same weights.
    """

    def __init__(self, model, step, seed, finished=None, initial=None):
        self.model = model
        self.spec = model.spec
        self.step = step
        self.seed = seed
        self.params = model.parameters_by_name()
        self.group = Groups([m["name"] for m in self.spec["modalities"]])
        self.modalities = list(range(len(self.spec["modalities"])))
        # The models each finished stage ended with (`NAME.out`, `NAME.z[m]`), in evaluation mode.
        self.finished = finished if finished is not None else {}
        self.assignments = []
        self._frozen_passes = {}
        # The run's initial values by parameter name (`init(G)`), made when a rule first asks; the
        # run's seed, not a stage's. Without a loop (tests), this context's seed.
        self._initial = initial or (lambda: initial_values(self.spec, self.seed))

    @property
    def device(self):
        return next(iter(self.params.values())).device

    def per_modality(self, value):
        return [value(m) for m in self.modalities]

    def other(self, m):
        """The other modality; the checker allows `other(m)` only with exactly two."""
        return 1 - m

    def except_(self, m):
        return [k for k in self.modalities if k != m]

    def param(self, group):
        """A learnable's value now (a copy: the optimiser step changes the parameter in place)."""
        [name] = members_of(self.params.keys(), group)
        return self.params[name].clone()

    def weights(self, group):
        """`weights(G)`: the group's parameters now, differentiable, as copies."""
        names = members_of(self.params.keys(), group)
        return Grouped([self.params[n].clone() for n in names], names)

    def initial(self, group):
        """`init(G)`: the group's parameters as training began (the run seed's draw)."""
        drawn = self._initial()
        names = members_of(self.params.keys(), group)
        return Grouped([drawn[n].to(self.device) for n in names], names)

    def fresh(self, group):
        """`fresh(G)`: a new draw of the group's parameters, from the seed and the step (the same on resume)."""
        drawn = initial_values(self.spec, (self.seed * 1000003 + self.step * 7919 + 104729) % 2147483647)
        names = members_of(self.params.keys(), group)
        return Grouped([drawn[n].to(self.device) for n in names], names)

    def frozen(self, stage, f):
        """`NAME.out`, `NAME.z[m]`, ...: pass f's inputs through the model stage NAME ended with, in evaluation mode, once per pass."""
        if stage not in self.finished:
            raise RuntimeError(f"stage {stage} has not ended: its weights cannot be read yet")
        key = (stage, id(f))
        if key not in self._frozen_passes:
            self._frozen_passes[key] = (f, Forward(self.finished[stage], f.inputs, f.target, training=False))
        return self._frozen_passes[key][1]

    def assign(self, group, value):
        """`set w = e`: made after the rule, so that every `set` reads the values before any is made."""
        [name] = members_of(self.params.keys(), group)
        parameter = self.params[name]
        self.assignments.append((parameter, torch.as_tensor(value, dtype=torch.float32, device=parameter.device).detach().reshape(parameter.shape)))

    def assign_weights(self, group, value):
        """`set weights(G) = g`: each parameter of the group to its tensor of g."""
        for name, tensor in zip(members_of(self.params.keys(), group), value):
            if tensor.shape != self.params[name].shape:
                raise ValueError(f"set weights: a value of shape {list(tensor.shape)} for {name} of shape {list(self.params[name].shape)}")
            self.assignments.append((self.params[name], tensor.detach().float()))

    @torch.no_grad()
    def apply_assignments(self):
        """Makes the rule's `set`s; the loop calls it after the rule."""
        for parameter, value in self.assignments:
            parameter.copy_(value)
        self.assignments = []
