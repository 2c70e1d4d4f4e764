#!/usr/bin/python3
"""Writes the ConvNeXt checkpoint fixtures used by tests/Updp.Tests/Checkpoints.

Run from the repository root with Debian's PyTorch (timm is not needed):

    /usr/bin/python3 tools/make_convnext_fixture.py [OUTPUT_DIR]

OUTPUT_DIR defaults to tests/Updp.Tests/Fixtures. The output is deterministic for a given PyTorch
build (fixed seed); it was made with PyTorch 1.13 on CPU. It writes:

  convnext_atto_convmlp.pt   timm convnext_atto (in_chans=1, num_classes=10, stem stride 2) in
                             timm's conv_mlp layout: mlp.fc1/fc2 are 1x1 convs with [out, in, 1, 1]
                             weights, block norms are LayerNorm2d. A flat state dict, as
                             torch.save(model.state_dict(), path) writes it.
  convnext_atto_linear.pt    the same weights in the layout of timm's tiny and larger models:
                             mlp.fc1/fc2 are nn.Linear with [out, in] weights on channels-last
                             tensors. Saved the way training scripts save checkpoints:
                             {"epoch": 7, "arch": "convnext_atto", "state_dict": {"module.<name>": ...}}
                             (nested, with DataParallel's "module." prefix).
  convnext_atto_io.safetensors
                             "input" [4, 1, 32, 32] float32 and the eval-mode logits PyTorch computed
                             from it with each layout: "logits_convmlp" and "logits_linear" [4, 10].
                             Written by write_safetensors below, independently of the C# writer.

The modules here are plain PyTorch written for this fixture; only their names and numerics follow
timm's ConvNeXt V1 (LayerNorm eps 1e-6, exact GELU, layer scale "gamma").
"""

import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixture_io import write_safetensors  # tools/ is on sys.path when run as tools/<script>.py

DEPTHS = [2, 2, 6, 2]
DIMS = [40, 80, 160, 320]
IN_CHANS = 1
NUM_CLASSES = 10
STEM_STRIDE = 2
EPS = 1e-6


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, conv):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1) if conv else nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1) if conv else nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, conv_mlp):
        super().__init__()
        self.conv_mlp = conv_mlp
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=EPS) if conv_mlp else nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, 4 * dim, conv_mlp)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x)
        if self.conv_mlp:
            x = self.mlp(self.norm(x)) * self.gamma.reshape(1, -1, 1, 1)
        else:
            x = x.permute(0, 2, 3, 1)
            x = (self.mlp(self.norm(x)) * self.gamma).permute(0, 3, 1, 2)
        return x + shortcut


class Stage(nn.Module):
    def __init__(self, in_dim, out_dim, depth, downsample, conv_mlp):
        super().__init__()
        if downsample:
            self.downsample = nn.Sequential(LayerNorm2d(in_dim, eps=EPS), nn.Conv2d(in_dim, out_dim, 2, stride=2))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[Block(out_dim, conv_mlp) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    def __init__(self, dim, num_classes):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=EPS)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.fc(self.norm(x.mean((2, 3), keepdim=True)).flatten(1))


class ConvNeXt(nn.Module):
    def __init__(self, conv_mlp):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(IN_CHANS, DIMS[0], STEM_STRIDE, stride=STEM_STRIDE), LayerNorm2d(DIMS[0], eps=EPS))
        self.stages = nn.Sequential(*[
            Stage(DIMS[i - 1] if i > 0 else DIMS[0], DIMS[i], DEPTHS[i], i > 0, conv_mlp)
            for i in range(len(DEPTHS))])
        self.head = Head(DIMS[-1], NUM_CLASSES)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def randomize(model):
    # Every parameter gets a distinct, non-trivial value: with timm's init (gamma 1e-6, unit norms,
    # zero biases) the blocks would hardly change the logits and a misloaded block would go unseen.
    g = torch.Generator().manual_seed(20240601)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 + 0.2)
            elif p.dim() == 1 and ("norm" in name or name.startswith("stem.1") or name.endswith("downsample.0.weight")):
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "Updp.Tests", "Fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    conv = ConvNeXt(conv_mlp=True).eval()
    randomize(conv)
    linear = ConvNeXt(conv_mlp=False).eval()
    linear_sd = OrderedDict(
        (k, v.reshape(linear.state_dict()[k].shape).clone()) for k, v in conv.state_dict().items())
    linear.load_state_dict(linear_sd)

    x = torch.randn(4, IN_CHANS, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits_conv = conv(x)
        logits_linear = linear(x)

    conv_sd = OrderedDict((k, v.clone().contiguous()) for k, v in conv.state_dict().items())
    torch.save(conv_sd, os.path.join(out, "convnext_atto_convmlp.pt"))
    nested = {
        "epoch": 7,
        "arch": "convnext_atto",
        "state_dict": OrderedDict(("module." + k, v.contiguous()) for k, v in linear.state_dict().items()),
    }
    torch.save(nested, os.path.join(out, "convnext_atto_linear.pt"))
    write_safetensors(os.path.join(out, "convnext_atto_io.safetensors"), OrderedDict(
        [("input", x), ("logits_convmlp", logits_conv), ("logits_linear", logits_linear)]))

    n = sum(p.numel() for p in conv.parameters())
    print(f"params {n}; logits range [{logits_conv.min():.3f}, {logits_conv.max():.3f}]; "
          f"max |conv - linear| {(logits_conv - logits_linear).abs().max():.2e}")


if __name__ == "__main__":
    main()
