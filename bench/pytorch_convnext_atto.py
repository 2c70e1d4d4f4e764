#!/usr/bin/env python3
"""Reference timing in PyTorch (Debian's python3-torch) for the model `updp bench` measures.

ConvNeXt-atto as timm builds it (conv_mlp: LayerNorm2d, 1x1-conv MLP), 1 input channel, 10 classes,
patchify stem of the given stride, on random 32x32 inputs. Prints median/p10/p90 ms of an AdamW
training step and of an eval forward pass, so the two stacks are compared on the same machine.
Usage: /usr/bin/python3 bench/pytorch_convnext_atto.py --batch 64 --stem-stride 4 --threads 2
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.fc1 = nn.Conv2d(dim, 4 * dim, 1)
        self.fc2 = nn.Conv2d(4 * dim, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.fc2(F.gelu(self.fc1(self.norm(self.conv_dw(x)))))
        return x + y * self.gamma.view(1, -1, 1, 1)


def convnext_atto(stem_stride, in_chans=1, num_classes=10):
    dims, depths = [40, 80, 160, 320], [2, 2, 6, 2]
    layers = [nn.Conv2d(in_chans, dims[0], stem_stride, stem_stride), LayerNorm2d(dims[0], eps=1e-6)]
    for i in range(4):
        if i > 0:
            layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], 2, 2)]
        layers += [Block(dims[i]) for _ in range(depths[i])]
    layers += [nn.AdaptiveAvgPool2d(1), LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(), nn.Linear(dims[-1], num_classes)]
    return nn.Sequential(*layers)


def stats(times):
    times = sorted(times)
    q = lambda p: times[min(len(times) - 1, int(round(p * (len(times) - 1))))]
    return q(0.5) * 1000, q(0.1) * 1000, q(0.9) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--stem-stride", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = convnext_atto(args.stem_stride)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(args.batch, 1, args.resolution, args.resolution)
    y = torch.randint(0, 10, (args.batch,))

    def train_step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(x)

    for name, fn, mode in (("train", train_step, model.train), ("infer", infer, model.eval)):
        mode()
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        med, p10, p90 = stats(times)
        print(f"pytorch {torch.__version__} {name} batch {args.batch} {args.resolution}px stem {args.stem_stride} "
              f"threads {args.threads}: median {med:.1f} ms (p10 {p10:.1f}, p90 {p90:.1f}), {args.batch * 1000 / med:.0f} images/s")


if __name__ == "__main__":
    main()
