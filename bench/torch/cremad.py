"""The CREMA-D-shaped step-time benchmark of issue 15, PyTorch side (bench/cremad.ts runs it).

    python3 bench/torch/cremad.py hand   --data data.npz [--threads 2] [--warmup 2] [--steps 9]
    python3 bench/torch/cremad.py target --data data.npz --trainer trainer.py [--rng torch] [--threads 2] ...

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


def report(ms):
    line = {"loop": args.loop, "threads": torch.get_num_threads(), "batch": BATCH, "ms": ms}
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


def hand():
    with np.load(args.data, allow_pickle=False) as data:
        audio, visual, labels = (torch.from_numpy(data[f"train/{k}"]) for k in ("audio", "visual", "y"))
    torch.manual_seed(0)
    labels = labels.long()
    model = AVClassifier(audio.shape[1], visual.shape[1])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    encoders = [list(model.audio.parameters()), list(model.visual.parameters())]
    model.train()
    if args.phases:
        model.forward = timing("forward", model.forward)
        torch.autograd.backward = timing("backward", torch.autograd.backward)
        optimizer.step = timing("optimizer step", optimizer.step)
    epoch = 0
    order = torch.randperm(len(labels))
    starts, running_loss = [], torch.zeros(())
    for start in range(0, len(order), BATCH):
        starts.append(time.perf_counter())
        if len(starts) == args.warmup + 1:
            phases.clear()
        if len(starts) > args.warmup + args.steps:
            break
        rows = order[start : start + BATCH]
        a, v, y = audio[rows], visual[rows], labels[rows]
        optimizer.zero_grad()
        out, out_a, out_v = model(a, v)
        loss = F.cross_entropy(out, y)
        loss.backward()
        with torch.no_grad():
            # OGM-GE: each modality's summed softmax score of the true class, their ratio, the coefficient.
            score_a = F.softmax(out_a, 1).gather(1, y[:, None]).sum()
            score_v = F.softmax(out_v, 1).gather(1, y[:, None]).sum()
            ratio = [score_a / score_v, score_v / score_a]
            if epoch < MODULATION_END:
                for params, rho in zip(encoders, ratio):
                    k = 1 - torch.tanh(ALPHA * F.relu(rho)) if rho > 1 else 1.0
                    # Gaussian noise with the std of the encoder's gradient, taken before the scaling.
                    std = torch.cat([p.grad.flatten() for p in params]).std()
                    for p in params:
                        p.grad.mul_(k).add_(torch.randn_like(p.grad) * (std + 1e-8))
        optimizer.step()
        running_loss += loss.detach()
    if len(starts) <= args.warmup + args.steps:
        sys.exit(f"only {len(starts)} steps in an epoch of {len(labels)} samples: export more samples")
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
    starts = []

    def timed(ctx, p):
        starts.append(time.perf_counter())
        if len(starts) == args.warmup + 1:
            phases.clear()
        if len(starts) > args.warmup + args.steps:
            raise _Done()
        return step(ctx, p)

    with tempfile.TemporaryDirectory(prefix="mmb-cremad-") as out:
        options = trainer["TrainOptions"](data=args.data, out=out, epochs=1, log=lambda line: None, rng=args.rng)
        try:
            trainer["train"]({**trainer["TRAINER"], "train_step": timed}, options)
        except _Done:
            pass
    if len(starts) <= args.warmup + args.steps:
        sys.exit(f"only {len(starts)} steps in an epoch: export more samples")
    return starts


starts = hand() if args.loop == "hand" else target()
intervals = [(b - a) * 1000 for a, b in zip(starts, starts[1:])]
report(intervals[args.warmup : args.warmup + args.steps])
