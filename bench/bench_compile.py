"""Compile time and peak memory of ``fxanalog.compile`` on CPU.

Run: ``.venv/bin/python bench/bench_compile.py [--skip-memory]``

1. Compile time of a ResNet-50-shaped network (bottleneck blocks 3-4-6-3,
   53 convolutions and the classifier) and of a BERT-base-shaped encoder
   (12 layers, d=768, 12 heads, FFN 3072, with ``nn.MultiheadAttention``),
   built in code with random weights. Targets: < 1 s and < 2 s. Printed
   with the ratio to plain ``torch.fx.symbolic_trace`` of the same model
   (the baseline measured in this run) and to the target.
2. Peak extra memory of ``compile(..., inplace=True)`` on a model of about
   2 GB of parameters (30 Linear layers of 4096 x 4096 in float32):
   resident memory sampled every millisecond during the compile, minus
   the resident memory before it. Target: < 10% of the parameters' size.
   The baseline is the same compile with ``inplace=False`` (a deep copy of
   the model, what aihwkit's conversion does).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fxanalog  # noqa: E402


# --------------------------------------------------------------------------
# Models


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return torch.relu(h + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class BertLayer(nn.Module):
    def __init__(self, d=768, heads=12, ff=3072):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        x = self.ln1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class Bert(nn.Module):
    def __init__(self, vocab=30522, d=768, layers=12):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(512, d)
        self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList(BertLayer(d) for _ in range(layers))
        self.pooler = nn.Linear(d, d)

    def forward(self, ids):
        x = self.ln(self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device)))
        for layer in self.layers:
            x = layer(x)
        return torch.tanh(self.pooler(x[:, 0]))


class Big(nn.Module):
    """About 2 GB of float32 parameters, cheap to build (uninitialized memory,
    then one fill so that the pages are resident before measuring)."""

    def __init__(self, n=30, d=4096):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d, d, bias=False, device="meta") for _ in range(n))
        self.to_empty(device="cpu")
        with torch.no_grad():
            for p in self.parameters():
                p.fill_(0.01)

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


# --------------------------------------------------------------------------
# Measurements


def best_of(fn, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra(fn) -> tuple[int, object]:
    """(peak resident memory during fn minus before, fn's result)."""
    gc.collect()
    base = rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    t = threading.Thread(target=sample)
    t.start()
    try:
        out = fn()
    finally:
        done.set()
        t.join()
    peak[0] = max(peak[0], rss())
    return peak[0] - base, out


def bench_time(name, model, target):
    model.eval()
    n_layers = sum(1 for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.MultiheadAttention)))
    fxanalog.compile(model, inplace=True)  # warm-up (imports, first-call caches)
    trace = best_of(lambda: torch.fx.symbolic_trace(model))
    inplace = best_of(lambda: fxanalog.compile(model, inplace=True))
    copied = best_of(lambda: fxanalog.compile(model))
    tiles = len(list(fxanalog.compile(model, inplace=True).named_analog_layers()))
    print(f"{name}: {n_layers} Linear/Conv/MultiheadAttention modules -> {tiles} analog tile layers")
    print(f"  fx.symbolic_trace (baseline)  {trace * 1e3:8.1f} ms")
    print(f"  compile(inplace=True)         {inplace * 1e3:8.1f} ms  = {inplace / trace:5.1f} x trace, "
          f"{inplace / target:.2f} of the {target:.0f} s target")
    print(f"  compile() (deep copy)         {copied * 1e3:8.1f} ms  = {copied / trace:5.1f} x trace, "
          f"{copied / target:.2f} of the {target:.0f} s target")
    return inplace


def bench_memory():
    model = Big()
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    extra_inplace, analog = peak_extra(lambda: fxanalog.compile(model, inplace=True))
    assert all(layer.weight is model.layers[i].weight for i, (_, layer) in enumerate(analog.named_analog_layers()))
    del analog
    gc.collect()
    extra_copy, analog = peak_extra(lambda: fxanalog.compile(model))
    del analog
    print(f"memory: model of {size / 2**30:.2f} GiB of parameters")
    print(f"  compile(inplace=True): peak extra {extra_inplace / 2**20:8.1f} MiB = "
          f"{extra_inplace / size:6.2%} of the parameters (target < 10%)")
    print(f"  compile() deep copy  : peak extra {extra_copy / 2**20:8.1f} MiB = "
          f"{extra_copy / size:6.2%} of the parameters (baseline; in-place uses "
          f"{extra_inplace / max(extra_copy, 1):.3f} of it)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-memory", action="store_true", help="skip the 2 GB memory measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    bench_time("ResNet-50-shaped", ResNet50(), target=1.0)
    bench_time("BERT-base-shaped encoder", Bert(), target=2.0)
    if not args.skip_memory:
        bench_memory()


if __name__ == "__main__":
    main()
