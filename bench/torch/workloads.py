"""The reference workloads of bench/workloads.ts in PyTorch: one SGD step each, median ms.

Run by `npm run bench` when PyTorch imports (Debian: apt-get install python3-torch), with the
same OPENBLAS_CORETYPE as the tfjs side: python3 workloads.py [threads] [index]. Prints one JSON
line per workload, with the process's peak RSS.
"""
import json
import resource
import statistics
import sys
import time

import torch
from torch import nn

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(1, 32, 3, 1, padding=1)
        self.c1 = nn.Conv2d(32, 64, 3, 2, padding=1)  # "same" for even sizes at stride 2 pads 0/1 in TF; the FLOPs agree
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        return self.out(torch.relu(self.c1(torch.relu(self.c0(x)))).mean((2, 3)))


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(74, 64, batch_first=True)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        return self.out(self.lstm(x)[0][:, -1])


def mlp():
    return nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


WORKLOADS = [
    ("mlp 512-512-512-10, batch 64", 64, mlp, (512,)),
    ("mlp 512-512-512-10, batch 256", 256, mlp, (512,)),
    ("conv 16x1x64x64", 16, Conv, (1, 64, 64)),
    ("lstm 50x74, hidden 64", 32, Lstm, (50, 74)),
]


def time_step(make, batch, shape, steps=50):
    model = make()
    x = torch.randn(batch, *shape)
    y = torch.arange(batch) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(steps + 10):
        started = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        if i >= 10:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


for name, batch, make, shape in WORKLOADS if len(sys.argv) < 3 else [WORKLOADS[int(sys.argv[2])]]:
    ms = time_step(make, batch, shape)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"workload": name, "backend": f"pytorch {torch.__version__}", "batch": batch, "ms": ms, "samplesPerSecond": batch * 1000 / ms, "peakMiB": peak}), flush=True)
