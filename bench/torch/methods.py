"""Four of the specs' rules written by hand in PyTorch, on the model of specs/baseline.mmb, for the
bench's "each method over the baseline" column. Timing only: random data of the specs' shapes.

The model: audio mlp(hidden [128], out 64); visual conv2d(channels [8, 16], 3x3 stride 2, mean,
dense 64); concat; linear(6). SGD with momentum 0.9 (and weight decay 1e-4 where the spec has it),
batch 64. contrib[m] = z_m W_m + b/2, as in runtime/model.ts. Prints one JSON line per method.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)
BATCH, CLASSES = 64, 6


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.audio = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
        self.visual_convs = nn.Sequential(nn.Conv2d(3, 8, 3, 2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, padding=1), nn.ReLU())
        self.visual_last = nn.Linear(16, 64)
        self.head = nn.Linear(128, CLASSES)

    def forward(self, audio, visual):
        z = [self.audio(audio), self.visual_last(self.visual_convs(visual).mean((2, 3)))]
        out = self.head(torch.cat(z, 1))
        w = self.head.weight
        contrib = [z[0] @ w[:, :64].t() + self.head.bias / 2, z[1] @ w[:, 64:].t() + self.head.bias / 2]
        return out, contrib

    def encoders(self):
        return [list(self.audio.parameters()), list(self.visual_convs.parameters()) + list(self.visual_last.parameters())]


def score(logits, y):
    return F.softmax(logits, 1).gather(1, y[:, None]).sum()


def baseline(model, out, contrib, y):
    loss = F.cross_entropy(out, y)
    loss.backward()
    with torch.no_grad():  # the spec logs these two values every step
        [score(c, y) for c in contrib]
        [torch.sqrt(sum((p.grad ** 2).sum() for p in ps)) for ps in model.encoders()]


def ogm_ge(model, out, contrib, y, alpha=0.8):
    F.cross_entropy(out, y).backward()
    with torch.no_grad():
        s = [score(c, y) for c in contrib]
        for m, ps in enumerate(model.encoders()):
            rho = s[m] / s[1 - m]
            k = 1 - torch.tanh(alpha * torch.relu(rho)) if rho > 1 else 1.0
            for p in ps:
                p.grad.mul_(k)
                p.grad.add_(torch.randn_like(p.grad) * (p.grad.std() + 1e-8))


def agm_cr(model, out, contrib, y, alpha=1e-5, r=1.0):
    loss = F.cross_entropy(out, y)
    last = [model.audio[2].weight, model.visual_last.weight]
    g = [torch.linalg.vector_norm(gr) for gr in torch.autograd.grad(loss, last, create_graph=True)]
    gbar = (g[0] + g[1]) / 2
    (loss + r * (torch.abs(g[0] - gbar) + torch.abs(g[1] - gbar))).backward()
    with torch.no_grad():
        for m, ps in enumerate(model.encoders()):
            k = g[1 - m] / g[m] + alpha
            for p in ps:
                p.grad.mul_(k)


def mmpareto(model, out, contrib, y, alpha=1.0):
    lm = F.cross_entropy(out, y)
    lu = [F.cross_entropy(c, y) for c in contrib]
    (lm + lu[0] + lu[1]).backward(retain_graph=True)
    for m, ps in enumerate(model.encoders()):
        gm = torch.cat([g.flatten() for g in torch.autograd.grad(lm, ps, retain_graph=True)])
        gu = torch.cat([g.flatten() for g in torch.autograd.grad(lu[m], ps, retain_graph=True)])
        with torch.no_grad():
            if F.cosine_similarity(gm, gu, 0) > 0:
                w = 0.5
            else:
                w = torch.clamp(torch.dot(gu - gm, gu) / torch.linalg.vector_norm(gm - gu) ** 2, 0.001, 0.999)
            g = 2 * (w * gm + (1 - w) * gu)
            g = g * alpha * torch.clamp(torch.linalg.vector_norm(gm + gu) / torch.linalg.vector_norm(g), min=1)
            offset = 0
            for p in ps:
                p.grad.copy_(g[offset:offset + p.numel()].view_as(p))
                offset += p.numel()


METHODS = [("baseline.mmb", baseline, 1e-4), ("ogm_ge.mmb", ogm_ge, 1e-4), ("agm_cr.mmb", agm_cr, 0.0), ("mmpareto.mmb", mmpareto, 1e-4)]


def time_method(rule, decay, steps=40):
    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=decay)
    audio, visual = torch.randn(BATCH, 64), torch.randn(BATCH, 3, 16, 16)
    y = torch.arange(BATCH) % CLASSES
    times = []
    for i in range(steps + 5):
        started = time.perf_counter()
        optimizer.zero_grad()
        out, contrib = model(audio, visual)
        rule(model, out, contrib, y)
        optimizer.step()
        if i >= 5:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


for name, rule, decay in METHODS:
    print(json.dumps({"spec": name, "ms": time_method(rule, decay)}), flush=True)
