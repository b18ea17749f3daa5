import numpy as np
import torch


def _zeros_for_unreached(grads, params):
    """autograd's None (a parameter the loss does not reach) as a zero gradient, and which were reached."""
    return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)], [g is not None for g in grads]


def _value_and_grads(value, params, create_graph):
    """
    The gradients of `value` wrt `params`, and which it reaches; of the global batch when processes
    share it (batch_gradients). `create_graph`: differentiable again (second order).
    """
    grads, reached = _zeros_for_unreached(torch.autograd.grad(value, params, create_graph=create_graph, allow_unused=True), params)
    return batch_gradients(grads), reached


def _grouped(by_name, names):
    """The gradient-shaped value of the parameters `names`, from their tensors by name."""
    return Grouped([by_name[n] for n in names], names)


class Gradients:
    """The update gradient of every parameter; actions change it, in spec order."""

    def __init__(self, values, noise_seed, tfjs_names, measured=None, memory=None, streams=Random):
        self.values = values
        self.lr_factors = {}
        # What the batch norms of the pass these gradients come from measured: the update commits it (model.py BatchNorm).
        self.measured = measured or {}
        self.noise_seed = noise_seed
        # Each parameter's noise is drawn as the tfjs trainer draws it: seeded by its tfjs name, in its tfjs layout.
        self.tfjs_names = tfjs_names
        # The run's memory for the noise and for what actions make (StepMemory).
        self.memory = memory or StepMemory()
        # The generator noise is drawn from: Random (the tfjs trainer's draws) or TorchRandom (`--rng torch`).
        self.streams = streams
        # The tensors this step's actions made, by name: no one else holds them, so a later action may
        # change them in place (the raw gradients a rule reads, and what `replace` puts, it may not).
        self._made = {}
        # Those of them lent by the run's memory, which `applied` gives back.
        self._lent = {}
        self._applied = False

    def names(self, group):
        if self._applied:
            raise RuntimeError("an action on gradients the optimiser has already applied")
        return members_of(self.values.keys(), group)

    def applied(self):
        """The optimiser has read these gradients: the memory their actions took goes back to the run, for a later step's."""
        self._applied = True
        for name, tensor in self._lent.items():
            self.memory.give_back(name, tensor)
        self._lent = {}

    def of(self, group):
        return [self.values[n] for n in self.names(group)]

    def _combine(self, name, op, torch_op, operand):
        """
        values[name] `op` operand (ops.py's mul or add) where the result keeps the gradient's shape
        and type, by `torch_op` (torch.mul or torch.add: the same bits) into the tensor an earlier
        action of this step made, or else into one the run's memory lends; otherwise as a new
        tensor. A ResNet's gradients are tens of MB, and fresh memory of that size costs a CPU
        step more in page faults than the arithmetic in it.
        """
        g = self.values[name]
        a, b = _by_sample(*_pair(g, operand))
        # Not recorded for autograd, though the operand may be (a rule value from the outputs): the
        # optimiser reads an update gradient, nothing differentiates it.
        with torch.no_grad():
            if a is g and _keeps_shape_and_type(g, b):
                out = g if self._made.get(name) is g else self._lend(name, g)
                torch_op(g, b, out=out)
            else:
                out = op(g, operand)
            self.values[name] = self._made[name] = out

    def _lend(self, name, like):
        if name in self._lent:
            # A tensor lent earlier in the step, since replaced (`replace`): back to the run's memory.
            self.memory.give_back(name, self._lent[name])
        self._lent[name] = self.memory.lend(name, like)
        return self._lent[name]

    def scale(self, group, factor):
        """Multiplies by one number, or tensor by tensor by a gradient-shaped value of this group."""
        for i, name in enumerate(self.names(group)):
            self._combine(name, mul, torch.mul, _element_of(factor, i, name))

    def add_noise(self, group, mean, std):
        """
        Adds N(mean, std²) noise, drawn from the stream of the run's seed, the step and the
        parameter that the tfjs trainer draws from: the same noise in both targets (with
        `--rng torch`, torch's draws from that seed).
        """
        for i, name in enumerate(self.names(group)):
            tfjs_name, tfjs_shape = self.tfjs_names[name]
            random = self.streams((self.noise_seed + name_hash(tfjs_name)) % 2147483647)
            # draw × std + mean (the bits of the products and sums the tfjs trainer makes), in the run's buffer.
            with torch.no_grad():
                noise = self.memory.normals(random, tfjs_name, tfjs_shape, self.values[name])
                noise.mul_(_element_of(std, i, name)).add_(_element_of(mean, i, name))
            self._combine(name, add, torch.add, noise)

    def scale_learning_rate(self, group, factor):
        for name in self.names(group):
            previous = self.lr_factors.get(name)
            self.lr_factors[name] = mul(previous, factor) if previous is not None else torch.as_tensor(factor, dtype=torch.float32).detach()

    def replace(self, group, value, mask=None):
        """`replace grad(G) by value`; with a mask, only where the mask holds."""
        names = self.names(group)
        if len(value) != len(names):
            raise ValueError(f'replace: {len(value)} gradients for the {len(names)} parameters of "{group}"')
        for name, replacement in zip(names, value):
            old = self.values[name]
            if replacement.shape != old.shape:
                raise ValueError(f"replace: gradient of shape {list(replacement.shape)} for {name} of shape {list(old.shape)}")
            self.values[name] = replacement if mask is None else torch.where(torch.as_tensor(mask, device=old.device).bool().expand(old.shape), replacement, old)


def _keeps_shape_and_type(g, operand):
    """Whether g op operand has g's shape and dtype: then `g op= operand` makes it, in g."""
    return torch.result_type(g, operand) == g.dtype and torch.broadcast_shapes(g.shape, operand.shape) == g.shape


class StepMemory:
    """
    Memory of a gradient's size that a run's steps reuse rather than take fresh each step (fresh
    memory of a ResNet's size costs a CPU step more in page faults than the arithmetic in it):

    - where the noise is drawn (`noise grad(G) ~ normal(...)`): one host array for the draws in
      tfjs's layout, one tensor per device for them in torch's, each as large as the largest
      parameter drawn;
    - what a step's actions make of a parameter's gradient (`scale`, `noise`): a tensor lent to
      one Gradients until the optimiser has applied it (Gradients.applied), and never to two at
      once. A Gradients that is never applied keeps its tensors, and they go with it.
    """

    def __init__(self):
        self._host = np.empty(0, np.float32)
        self._tensors = {}
        # Tensors given back, by parameter name: free to lend again.
        self._free = {}

    def lend(self, name, like):
        """A tensor of `like`'s shape, type and device for parameter `name`'s gradient, its borrower's until given back."""
        free = self._free.get(name, [])
        for i, tensor in enumerate(free):
            if tensor.shape == like.shape and tensor.dtype == like.dtype and tensor.device == like.device:
                return free.pop(i)
        return torch.empty_like(like, memory_format=torch.contiguous_format)

    def give_back(self, name, tensor):
        self._free.setdefault(name, []).append(tensor)

    def normals(self, random, tfjs_name, tfjs_shape, like):
        """`random`'s next normal draws for the parameter `tfjs_name` (tfjs shape `tfjs_shape`), in torch's layout: a float32 tensor of `like`'s shape and device, this object's until its next call."""
        n = like.numel()
        key = str(like.device)
        if key not in self._tensors or self._tensors[key].numel() < n:
            self._tensors[key] = torch.empty(n, dtype=torch.float32, device=like.device)
        tensor = self._tensors[key][:n].view(like.shape)
        if random.native:
            return random.normals_into(tensor)
        host = None
        if like.device.type == "cpu":
            if self._host.size < n:
                self._host = np.empty(n, np.float32)
            host = self._host[:n]
        # Drawn on the gradient's device (a GPU run's noise does not cross from the host), in tfjs's layout.
        drawn = random.normals_on(n, like.device, host=host).reshape(tfjs_shape)
        return tensor.copy_(torch_layout(tfjs_name, drawn))


def _element_of(operand, i, name):
    """The i-th parameter's part of an operand: the number itself, or its tensor of a gradient-shaped value."""
    if not isinstance(operand, list):
        return operand
    if i >= len(operand):
        raise ValueError(f"a gradient-shaped operand of {len(operand)} tensors for parameter {i + 1} ({name}) of its group")
    return operand[i]


class BatchRandom(StepRandom):
    """
    The step's draws (StepRandom) for a batch the processes share (ops.py): a draw per sample
    (`bernoulli` of a per-sample p) or per element of outputs or features (`dropout`) is made for
    the whole global batch, as one process draws it, and each process keeps its rows'.
    """

    def __init__(self, seed, step, layouts, streams=Random):
        super().__init__(seed, step, streams)
        # Each torch parameter's tfjs name and shape, in tfjs's order (StepContext's model.tfjs_name_of).
        self.layouts = layouts

    def bernoulli(self, id, p):
        if torch.is_tensor(p) and p.dim() > 0:
            return own_rows(super().bernoulli(id, whole_batch(p)))
        if isinstance(p, Grouped) and not self.streams.native:
            return self._bernoulli_as_tfjs(id, p)
        return super().bernoulli(id, p)

    def _bernoulli_as_tfjs(self, id, p):
        """
        A draw per element of a gradient-shaped value as the tfjs trainer makes it: one stream,
        parameter after parameter in tfjs's order, each element in its tfjs layout (transposed
        to torch's afterwards).
        """
        order = list(self.layouts)
        random = self._stream(id)
        drawn = [None] * len(p)
        for i in sorted(range(len(p)), key=lambda i: order.index(p.names[i])):
            tfjs_name, shape = self.layouts[p.names[i]]
            uniforms = random.uniforms(p[i].numel()).astype(np.float32).reshape(shape)
            u = torch.from_numpy(np.ascontiguousarray(torch_layout(tfjs_name, uniforms))).to(p[i].device)
            drawn[i] = (u < p[i]).float()
        return Grouped(drawn, p.names)

    def dropout(self, id, x, p):
        return own_rows(super().dropout(id, whole_batch(x), p))


class BatchHistory(History):
    """
    The run's History for a batch the processes share (ops.py): `class_mean` and `owm` reduce over
    the samples themselves, so they read the whole global batch.
    """

    def class_mean(self, slot, index, features, target, momentum, classes):
        return super().class_mean(slot, index, whole_batch(features), whole_batch(target), momentum, classes)

    def owm(self, slot, index, g, x, alpha):
        return super().owm(slot, index, g, whole_batch(x), alpha)


class StepContext(RuleContext):
    """
    What one training step can see and do, as runtime/step.ts's StepContext: the generated
    `train_step` drives it phase by phase. Gradients are taken with torch.autograd.grad on the
    model's own parameters; `create_graph=True` where a loss reads gradients (second order).
    Under torchrun, `inputs` and `target` are this process's rows of the global batch, and what
    the step computes is the global batch's (ops.py, "the batch, shared by processes").
    """

    def __init__(
        self, model, inputs, target, step, epoch, history, seed, trained_separately=(), spec_params=None, progress=0.0,
        separate_optimizers=None, epoch_values=None, finished=None, initial=None, memory=None, streams=Random,
    ):
        super().__init__(model, step, seed, finished, initial)
        self.inputs = inputs
        self.target = target
        self.epoch = epoch
        self.history = history
        self.spec_params = spec_params or {}
        self.progress = progress
        self.separate_optimizers = separate_optimizers if separate_optimizers is not None else {}
        # What the epoch rule computed at this epoch's start (`every epoch`): logged numbers, kept snapshots.
        self.epoch_values = epoch_values or {"logged": {}, "kept": {}}
        # Where gradient noise is drawn and actions work: the run's, kept from step to step (StepMemory).
        self.memory = memory
        if getattr(model, "tfjs_name_of", None) is None:
            model.tfjs_name_of = {key: (name, shape) for name, shape, key in tfjs_names(model)}
        self.trained_separately = list(trained_separately)
        self.keep = [1 for _ in self.modalities]
        # The step's random draws (`uniform`, `bernoulli`, `dropout`, `drop`, noise), the same in every
        # pass of the step: Random's, the tfjs trainer's bits, or with `--rng torch` TorchRandom's.
        self.random = BatchRandom(seed, step, model.tfjs_name_of, streams)
        # Where this process's rows lie in the step's global batch (first row, rows in all), for the
        # encoders' dropout: kept from here, since a per-sample pass runs with the batch unshared.
        self.rows = batch_rows(target.shape[0])
        self.total_loss = None
        self._task_loss = None
        self._probe_forward = None
        # Set by the training loop: applies the optimiser to the update gradient.
        self.update = None

    def epoch_value(self, name, m=None):
        """A value of the epoch rule (one per modality: modality m's), constant during the epoch."""
        value = self.epoch_values["logged"].get(name, self.epoch_values["kept"].get(name))
        if value is None:
            raise RuntimeError(f"the epoch rule computed no `{name}`")
        return value if m is None else value[m]

    def end_turn(self):
        """Ends one modality's turn of `turns step`: the next turn's rules read the history this one wrote."""
        self.history.advance()

    # ------------------------------------------------------------ forward passes

    def _forward(self, sample=None):
        first, total = self.rows
        if sample is None:
            return Forward(self.model, self.inputs, self.target, training=True, keep=self.keep, draws=(self.random, first, total))
        one = lambda t: t[sample : sample + 1]
        keep = [k if isinstance(k, (int, float)) else one(k) for k in self.keep]
        return Forward(self.model, [one(x) for x in self.inputs], one(self.target), training=True, keep=keep, draws=(self.random, first + sample, total))

    def drop(self, m, p, rescale=False):
        """
        `drop z[m] with p`: zero modality m's features per sample with probability p (a number or
        one per sample), drawn as the tfjs trainer draws them, one per sample of the global batch
        (this process's rows keep theirs); `rescale`: the kept ones × 1/(1 − p).
        """
        batch = self.inputs[m].shape[0]
        random = self.random.streams((self.seed * 1000003 + self.step * 7919 + m) % 2147483647)
        draws = own_rows(random.uniforms_on(batch_size(batch), self.target.device).float())
        if isinstance(p, (int, float)):
            mask = (draws >= p).float().reshape(batch, 1)
        else:
            mask = (draws >= p.reshape(-1)).float().reshape(batch, 1)
        if rescale:
            kept = torch.as_tensor(sub(1, p), dtype=torch.float32, device=mask.device).reshape(-1, 1)
            # Where p = 1 no sample is kept: those zeros stay 0, not 0/0.
            mask = torch.where(kept == 0, torch.zeros_like(mask), mask / torch.where(kept == 0, torch.ones_like(kept), kept))
        self.keep[m] = mask

    def probe(self, value):
        """A drop probability that reads this step's outputs: on a pass without any drop, as a constant."""
        if self._probe_forward is None:
            self._probe_forward = Forward(self.model, self.inputs, self.target, training=True, draws=(self.random, *self.rows))
        v = value(self._probe_forward)
        return v.detach() if torch.is_tensor(v) else v

    # ------------------------------------------------------------ gradients

    def _trainable(self):
        return [n for n in self.params if not any(in_group(n, g) for g in self.trained_separately)]

    def _loss_gradient(self, group, loss, sample=None):
        """∂loss/∂(group) through a forward pass of its own, differentiable again; of one sample, if given, that sample's loss alone."""
        members = members_of(self.params.keys(), group)
        if sample is None:
            grads, _ = _value_and_grads(loss(self._forward()), [self.params[n] for n in members], create_graph=True)
        else:
            first, total = self.rows
            with unshared_batch(), self.random.sample_pass(first + sample, total):
                grads, _ = _value_and_grads(loss(self._forward(sample)), [self.params[n] for n in members], create_graph=True)
        return Grouped(grads, members)

    def _gradient_of(self, task_loss, of_task):
        """The `grad` a rule reads: `of_task` for the task loss's; `grad(G, L)` and per-sample ones take a pass of their own."""

        def grad(group, loss=None, sample=None):
            if loss is not None or sample is not None:
                return self._loss_gradient(group, loss or task_loss, sample)
            return of_task(group)

        return grad

    def per_sample(self, value):
        """
        `per_sample(e)`: e for each sample of the batch, one value per sample. A process that holds
        fewer rows than another evaluates e once more, on no sample, and keeps it out: e may
        reduce over the global batch, which every process must do as many times.
        """
        rows = self.target.shape[0]
        values = [torch.as_tensor(value(i), dtype=torch.float32, device=self.target.device).reshape(()) for i in range(rows_per_process(rows))]
        return torch.stack(values[:rows]) if rows else torch.zeros(0, device=self.target.device)

    def backward(self, task_loss, added=None, reads_task_gradient=True, only_reached=False):
        """
        Forward pass, task loss, and the update gradient of every trainable parameter. With `added`,
        the update differentiates task loss + added, through the gradients `added` reads (second
        order); the rule values still read the raw ∂(task loss)/∂θ. Returns (loss, update
        gradients, grad, forward).
        """
        loss_of = lambda f: task_loss(f, self)
        self._task_loss = loss_of
        names = self._trainable()
        trainable = [self.params[n] for n in names]
        noise_seed = (self.seed * 1000003 + self.step) % 2147483647
        if added is not None and not reads_task_gradient:
            # First order: the task loss's own gradients for the rule, plus the added loss's.
            loss, update, grad, forward = self.backward(task_loss, only_reached=only_reached)
            extra = added(self._forward(), self._gradient_of(loss_of, lambda group: self._loss_gradient(group, loss_of)))
            extra_grads, reached = _value_and_grads(extra, trainable, create_graph=False)
            for name, g, hit in zip(names, extra_grads, reached):
                own = update.values.get(name)
                if own is not None or hit or not only_reached:
                    update.values[name] = g if own is None else own + g
            self.total_loss = (loss + extra).detach()
            return loss, update, grad, forward
        forward = self._forward()
        task = loss_of(forward)
        if added is None:
            grads, reached = _value_and_grads(task, trainable, create_graph=False)
            raw = dict(zip(names, grads))
            update = Gradients({n: g for n, g, hit in zip(names, grads, reached) if hit or not only_reached}, noise_seed, self.model.tfjs_name_of, forward.measured, self.memory, self.random.streams)
            self.total_loss = task.detach()
            return task.detach(), update, self._gradient_of(loss_of, lambda group: _grouped(raw, members_of(names, group))), forward
        # Second order: the added loss reads the task loss's gradients, differentiated through.
        every = list(self.params)
        inner, _ = _value_and_grads(task, [self.params[n] for n in every], create_graph=True)
        by_name = dict(zip(every, inner))
        total = task + added(forward, self._gradient_of(loss_of, lambda group: _grouped(by_name, members_of(every, group))))
        grads, reached = _value_and_grads(total, trainable, create_graph=False)
        raw = {n: g.detach() for n, g in by_name.items()}
        update = Gradients({n: g for n, g, hit in zip(names, grads, reached) if hit or not only_reached}, noise_seed, self.model.tfjs_name_of, forward.measured, self.memory, self.random.streams)
        self.total_loss = total.detach()
        return task.detach(), update, self._gradient_of(loss_of, lambda group: _grouped(raw, members_of(every, group))), forward

    def minimize(self, group, optimizer, objective, reads_task_gradient=True):
        """Updates `group` with its own optimiser on `objective`, differentiated through task gradients it reads."""
        if self._task_loss is None:
            raise RuntimeError("minimize runs after backward")
        members = members_of(self.params.keys(), group)
        forward = self._forward()
        if reads_task_gradient:
            every = list(self.params)
            inner, _ = _value_and_grads(self._task_loss(forward), [self.params[n] for n in every], create_graph=True)
            by_name = dict(zip(every, inner))
            value = objective(forward, self._gradient_of(self._task_loss, lambda g: _grouped(by_name, members_of(every, g))))
        else:

            def loss_gradient_only(g, loss=None, sample=None):
                if loss is None:
                    raise RuntimeError("this objective was compiled without task gradients")
                return self._loss_gradient(g, loss, sample)

            value = objective(forward, loss_gradient_only)
        grads, _ = _value_and_grads(value, [self.params[n] for n in members], create_graph=False)
        own = self.separate_optimizers.get(group)
        if own is None:
            own = self.separate_optimizers[group] = Optimizer(optimizer)
        own.apply(self.params, dict(zip(members, grads)), lambda name: 1)
        return value.detach()
