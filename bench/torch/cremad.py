"""The CREMA-D-shaped step-time benchmark of issue 15, PyTorch side (bench/cremad.ts runs it).

    python3 bench/torch/cremad.py hand   --data data.npz [--threads 2] [--warmup 2] [--steps 9]
    python3 bench/torch/cremad.py target --data data.npz --trainer trainer.py [--rng torch] [--beside-hand] [--threads 2] ...

`hand`: OGM-GE on two ResNet-18-shaped encoders written as a researcher would write it (nn.Module,
autograd, torch.optim.SGD), the model and rule of bench/cremad_ogm_ge.mmb. `target`: the trainer
mmb generated from that spec (`--target torch`), imported with runpy and trained by its own loop
(runtime/torch/train.py's `train`), with the step's draws the tfjs trainer's or, with `--rng torch`,
torch's own (the hand-written loop's `torch.randn_like`).

Both time the same thing, one full training step as the loop runs it: the batch's tensors, forward,
backward, the rule, the optimiser update, and what the loop does per step besides (the generated
loop's step record). Each step is the time from its start to the next step's start, in one epoch
over the exported training samples; the first `warmup` are left out. The generated loop is timed
by wrapping its `train_step` (which holds forward, backward, rule and update) to note when each
step starts; after the last timed step the wrapper stops the run, before the epoch's evaluation.
`--beside-hand` runs a hand-written step before each generated one, in the same process, and times
each alone: processes of one loop differ by more than the loops do on a shared machine, and this
gives a ratio step by step ("hand_ms": the hand-written steps, in order; a generated step then
runs from its train_step call to the next one, its step record included).
Prints one JSON line: {"loop", "threads", "batch", "ms": [each timed step]}; with `--phases`, also
"phases": seconds per timed step spent in each part of the step (inclusive: a phase's time holds the
phases it calls), for finding where the generated trainer's time goes.
"""
import argparse
import json
import os
import runpy
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("loop", choices=["hand", "target"])
parser.add_argument("--data", required=True)
parser.add_argument("--trainer")
parser.add_argument("--rng", choices=["shared", "torch"], default="shared", help="target: the generator of the step's draws (the trainer's --rng)")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--steps", type=int, default=9)
parser.add_argument("--phases", action="store_true", help="also report the seconds per step of each phase of the step")
parser.add_argument("--beside-hand", action="store_true", help="target: a hand-written step before each generated one, in this process (their times in hand_ms)")
args = parser.parse_args()
torch.set_num_threads(args.threads)

# The spec's settings (bench/cremad_ogm_ge.mmb).
BATCH, CLASSES, WIDTH = 8, 6, 512
CHANNELS, BLOCKS = [64, 128, 256, 512], 2
LR, MOMENTUM, WEIGHT_DECAY = 1e-3, 0.9, 1e-4
ALPHA, MODULATION_END = 0.8, 50


# Seconds spent in each wrapped function (`--phases`), over the timed steps.
phases = {}


def timing(name, function):
    """`function`, adding the time each call takes to phases[name]."""

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

    return timed


def report(ms, hand_ms=None):
    line = {"loop": args.loop, "threads": torch.get_num_threads(), "batch": BATCH, "ms": ms}
    if hand_ms is not None:
        line["hand_ms"] = hand_ms
    if args.phases:
        line["phases"] = {name: round(seconds / args.steps, 4) for name, seconds in sorted(phases.items(), key=lambda kv: -kv[1])}
    print(json.dumps(line), flush=True)


# ---------------------------------------------------------------- the hand-written loop


class BasicBlock(nn.Module):
    """torchvision's basic block: conv–BN–relu, conv–BN, plus the input (through a 1×1 conv–BN where the shape changes), relu."""

    def __init__(self, inputs, channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        if stride != 1 or inputs != channels:
            self.skip = nn.Sequential(nn.Conv2d(inputs, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))
        else:
            self.skip = nn.Identity()

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.skip(x))


class ResNet(nn.Module):
    """ResNet-18's stages with mmb's 3×3 stride-1 stem (conv–BN–relu), global mean pool, and a linear to 512 features."""

    def __init__(self, inputs):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(inputs, CHANNELS[0], 3, 1, padding=1, bias=False), nn.BatchNorm2d(CHANNELS[0]))
        layers, previous = [], CHANNELS[0]
        for i, channels in enumerate(CHANNELS):
            for j in range(BLOCKS):
                layers.append(BasicBlock(previous, channels, 2 if i > 0 and j == 0 else 1))
                previous = channels
        self.stages = nn.Sequential(*layers)
        self.last = nn.Linear(CHANNELS[-1], WIDTH)

    def forward(self, x):
        return self.last(self.stages(F.relu(self.stem(x))).mean((2, 3)))


class AVClassifier(nn.Module):
    def __init__(self, audio_channels, visual_channels):
        super().__init__()
        self.audio = ResNet(audio_channels)
        self.visual = ResNet(visual_channels)
        self.head = nn.Linear(2 * WIDTH, CLASSES)

    def forward(self, audio, visual):
        a, v = self.audio(audio), self.visual(visual)
        out = self.head(torch.cat([a, v], 1))
        # Each modality's share of the logits, as OGM-GE's reference code computes it: W_m·z_m + b/2.
        w, b = self.head.weight, self.head.bias
        out_a = a @ w[:, :WIDTH].t() + b / 2
        out_v = v @ w[:, WIDTH:].t() + b / 2
        return out, out_a, out_v


class HandLoop:
    """The hand-written loop's model, optimiser and data; `step()` trains one batch, epoch after epoch over the training samples."""

    def __init__(self):
        with np.load(args.data, allow_pickle=False) as data:
            self.audio, self.visual, labels = (torch.from_numpy(data[f"train/{k}"]) for k in ("audio", "visual", "y"))
        torch.manual_seed(0)
        self.labels = labels.long()
        self.model = AVClassifier(self.audio.shape[1], self.visual.shape[1])
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        self.encoders = [list(self.model.audio.parameters()), list(self.model.visual.parameters())]
        self.model.train()
        if args.phases:
            self.model.forward = timing("hand: forward", self.model.forward)
            torch.autograd.backward = timing("hand: backward", torch.autograd.backward)
            self.optimizer.step = timing("hand: optimizer step", self.optimizer.step)
        # Every step the bench times is in the first epochs, where OGM-GE modulates.
        self.epoch = 0
        self.batches = iter(())
        self.running_loss = torch.zeros(())

    def step(self):
        rows = next(self.batches, None)
        if rows is None:
            order = torch.randperm(len(self.labels))
            self.batches = iter([order[start : start + BATCH] for start in range(0, len(order), BATCH)])
            rows = next(self.batches)
        a, v, y = self.audio[rows], self.visual[rows], self.labels[rows]
        self.optimizer.zero_grad()
        out, out_a, out_v = self.model(a, v)
        loss = F.cross_entropy(out, y)
        loss.backward()
        with torch.no_grad():
            # OGM-GE: each modality's summed softmax score of the true class, their ratio, the coefficient.
            score_a = F.softmax(out_a, 1).gather(1, y[:, None]).sum()
            score_v = F.softmax(out_v, 1).gather(1, y[:, None]).sum()
            ratio = [score_a / score_v, score_v / score_a]
            if self.epoch < MODULATION_END:
                for params, rho in zip(self.encoders, ratio):
                    k = 1 - torch.tanh(ALPHA * F.relu(rho)) if rho > 1 else 1.0
                    # Gaussian noise with the std of the encoder's gradient, taken before the scaling.
                    std = torch.cat([p.grad.flatten() for p in params]).std()
                    for p in params:
                        p.grad.mul_(k).add_(torch.randn_like(p.grad) * (std + 1e-8))
        self.optimizer.step()
        self.running_loss += loss.detach()


def hand():
    loop = HandLoop()
    if len(loop.labels) < BATCH * (args.warmup + args.steps):
        sys.exit(f"only {len(loop.labels) // BATCH} steps in an epoch of {len(loop.labels)} samples: export more samples")
    starts = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            phases.clear()
        starts.append(time.perf_counter())
        loop.step()
    # The last step's end.
    starts.append(time.perf_counter())
    return starts


# ---------------------------------------------------------------- the generated trainer


class _Done(Exception):
    """Raised by the timing wrapper after the last timed step: the run stops before its evaluation."""


def target():
    trainer = runpy.run_path(args.trainer, run_name="mmb_bench_trainer")
    step = trainer["TRAINER"]["train_step"]
    if args.phases:
        # The trainer's own globals (run_path returns a copy of them), and its classes.
        module = trainer["train"].__globals__
        for name in ["_value_and_grads", "grad_std", "grad_norm", "_train_step_record", "_same_padding"]:
            module[name] = timing(name, module[name])
        # ctx.update: the optimiser step and the update's gradient norms.
        make_update = module["_train_update"]
        module["_train_update"] = lambda *a: timing("ctx.update", make_update(*a))
        for cls, method in [("Forward", "__init__"), ("Gradients", "scale"), ("Gradients", "add_noise"), ("Optimizer", "apply")]:
            setattr(module[cls], method, timing(f"{cls}.{method}", getattr(module[cls], method)))
        step = timing("train_step", step)
    # With --beside-hand, the hand-written loop's model and data, in this process too.
    beside = HandLoop() if args.beside_hand else None
    # Each generated step's start and end: the end is when the loop calls train_step again, so a
    # step holds the loop's own work after train_step (its step record) and not the hand-written
    # step run between the two.
    starts, ends, hand_ms = [], [], []

    def timed(ctx, p):
        if starts:
            ends.append(time.perf_counter())
        if len(starts) == args.warmup:
            phases.clear()
        if len(starts) == args.warmup + args.steps:
            raise _Done()
        if beside is not None:
            started = time.perf_counter()
            beside.step()
            hand_ms.append((time.perf_counter() - started) * 1000)
        starts.append(time.perf_counter())
        return step(ctx, p)

    with tempfile.TemporaryDirectory(prefix="mmb-cremad-") as out:
        options = trainer["TrainOptions"](data=args.data, out=out, epochs=1, log=lambda line: None, rng=args.rng)
        try:
            trainer["train"]({**trainer["TRAINER"], "train_step": timed}, options)
        except _Done:
            pass
    if len(ends) < args.warmup + args.steps:
        sys.exit(f"only {len(ends)} steps in an epoch: export more samples")
    ms = [(end - start) * 1000 for start, end in zip(starts, ends)]
    return ms[args.warmup :], hand_ms[args.warmup :] if beside is not None else None


if args.loop == "hand":
    starts = hand()
    report([(b - a) * 1000 for a, b in zip(starts, starts[1:])][args.warmup :])
else:
    report(*target())
