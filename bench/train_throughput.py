#!/usr/bin/env python3
"""Reference training throughput in PyTorch on CPU, for comparison with `fxtwin bench train`.

The same two networks and workload as fxtwin's benchmark (models/src/bench.rs), written
plainly in PyTorch:
  lstm-32  one LSTM layer, 32 hidden, linear read-out, input skip; truncated back-propagation
           through time in chunks of 4800 samples, one AdamW step per chunk;
  tcn-45   5 dilated causal conv blocks (kernel 7, 16 channels, dilations 1, 4, 16, 64, 256),
           tanh, 1x1 residual, 1x1 read-out; one AdamW step per batch.
Batches of 4 x 1 s at 48 kHz, ESR loss. Prints one JSON object per network.
Usage: train_throughput.py [--threads 2] [--batches 3]
"""
import argparse
import json
import math
import time

import torch
from torch import nn


class Lstm(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.rnn = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x, state):
        h, state = self.rnn(x.unsqueeze(-1), state)
        return self.head(h).squeeze(-1) + x, state


class Tcn(nn.Module):
    def __init__(self, channels=16, kernel=7, dilations=(1, 4, 16, 64, 256)):
        super().__init__()
        self.convs = nn.ModuleList()
        self.res = nn.ModuleList()
        self.hist = []
        c_in = 1
        for d in dilations:
            self.convs.append(nn.Conv1d(c_in, channels, kernel, dilation=d))
            self.res.append(nn.Conv1d(c_in, channels, 1, bias=False))
            self.hist.append((kernel - 1) * d)
            c_in = channels
        self.head = nn.Conv1d(channels, 1, 1)
        self.receptive_field = 1 + sum(self.hist)

    def forward(self, x):
        h = x.unsqueeze(1)
        for conv, res, hist in zip(self.convs, self.res, self.hist):
            h = torch.tanh(conv(h)) + res(h[..., hist:])
        return self.head(h).squeeze(1)


def esr(pred, target):
    return ((target - pred) ** 2).sum() / ((target ** 2).sum() + 1e-8)


def material(batch, length):
    t = torch.arange(length, dtype=torch.float32) / 48000.0
    rows = [0.6 * torch.sin(2 * math.pi * (110.0 + 30.0 * b) * t) * torch.exp(-3.0 * t)
            for b in range(batch)]
    x = torch.stack(rows)
    return x, 0.5 * torch.tanh(3.0 * x)


def bench_lstm(batches, batch=4, item=48000, tbptt=4800):
    torch.manual_seed(7)
    model = Lstm(32)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    x, y = material(batch, item)

    def run():
        state = None
        for start in range(0, item, tbptt):
            pred, state = model(x[:, start:start + tbptt], state)
            loss = esr(pred, y[:, start:start + tbptt])
            opt.zero_grad()
            loss.backward()
            opt.step()
            state = tuple(s.detach() for s in state)

    run()
    t0 = time.perf_counter()
    for _ in range(batches):
        run()
    seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    return params, batches * batch * item / seconds, seconds


def bench_tcn(batches, batch=4, item=48000):
    torch.manual_seed(7)
    model = Tcn()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x, y = material(batch, item + model.receptive_field - 1)
    target = y[:, model.receptive_field - 1:]

    def run():
        loss = esr(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    run()
    t0 = time.perf_counter()
    for _ in range(batches):
        run()
    seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    return params, batches * batch * item / seconds, seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, fn in (("lstm-32", bench_lstm), ("tcn-45", bench_tcn)):
        params, sps, seconds = fn(args.batches)
        print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "preset": name,
                          "parameters": params, "samples_per_s": sps, "seconds": seconds}))


if __name__ == "__main__":
    main()
