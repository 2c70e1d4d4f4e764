#!/usr/bin/python3
"""Writes the MobileNetV2 checkpoint fixtures used by tests/Updp.Tests/Checkpoints.

Run from the repository root with Debian's PyTorch and torchvision (apt-get install python3-torchvision;
timm is not needed):

    /usr/bin/python3 tools/make_mobilenetv2_fixture.py [OUTPUT_DIR]

OUTPUT_DIR defaults to tests/Updp.Tests/Fixtures. The output is deterministic for a given PyTorch
build (fixed seed); it was made with PyTorch 1.13 and torchvision 0.14 on CPU. The model is
torchvision's mobilenet_v2(width_mult=0.5, num_classes=10) with a one-channel stem (stride 2, as
torchvision and timm have it), i.e. Updp's mobilenetv2_050 with in_chans=1 and 10 classes; the
reduced width keeps each file under 3 MB. It writes:

  mobilenetv2_050_torchvision.pt
                  torchvision's own model and names (features.k..., classifier.1), a flat state dict
                  as torch.save(model.state_dict(), path) writes it.
  mobilenetv2_050_timm.pt
                  the same weights under timm's mobilenetv2_050 names (conv_stem, bn1,
                  blocks.i.j.conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3, blocks.0.0.conv_dw/bn1/conv_pw/bn2,
                  conv_head, bn2, classifier), held by the plain-PyTorch TimmMobileNetV2 below,
                  which follows timm's EfficientNet structure. Its weights are copied by position
                  (both models register their tensors in execution order) and its logits are checked
                  here against torchvision's, so the names come from a model that computes the same
                  function, not from a renaming table.
  mobilenetv2_050_io.safetensors
                  "input" [4, 1, 32, 32] float32 and "logits" [4, 10], torchvision's eval-mode logits
                  for it. Written by write_safetensors below, independently of the C# writer.
"""

import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torchvision

from fixture_io import write_safetensors  # tools/ is on sys.path when run as tools/<script>.py

WIDTH = 0.5
IN_CHANS = 1
NUM_CLASSES = 10
# t, c, n, s (torchvision's inverted_residual_setting; timm's arch_def for mobilenetv2)
SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def bn(c):
    return nn.BatchNorm2d(c)


class DepthwiseSeparable(nn.Module):
    """timm's DepthwiseSeparableConv (the t=1 block): conv_dw, bn1 (+ReLU6), conv_pw, bn2."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.bn1 = bn(cin)
        self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = bn(cout)
        self.has_skip = cin == cout

    def forward(self, x):
        y = self.bn2(self.conv_pw(torch.clamp(self.bn1(self.conv_dw(x)), 0, 6)))
        return y + x if self.has_skip else y


class InvertedResidual(nn.Module):
    """timm's InvertedResidual: conv_pw, bn1 (+ReLU6), conv_dw, bn2 (+ReLU6), conv_pwl, bn3."""

    def __init__(self, cin, cout, stride, t):
        super().__init__()
        mid = cin * t
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = bn(mid)
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = bn(mid)
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = bn(cout)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x):
        y = torch.clamp(self.bn1(self.conv_pw(x)), 0, 6)
        y = torch.clamp(self.bn2(self.conv_dw(y)), 0, 6)
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.has_skip else y


class TimmMobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        stem = make_divisible(32 * WIDTH)
        self.conv_stem = nn.Conv2d(IN_CHANS, stem, 3, 2, 1, bias=False)
        self.bn1 = bn(stem)
        stages = []
        cin = stem
        for t, c, n, s in SETTINGS:
            cout = make_divisible(c * WIDTH)
            blocks = []
            for j in range(n):
                blocks.append(DepthwiseSeparable(cin, cout) if t == 1 else InvertedResidual(cin, cout, s if j == 0 else 1, t))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        head = make_divisible(1280 * max(1.0, WIDTH))
        self.conv_head = nn.Conv2d(cin, head, 1, bias=False)
        self.bn2 = bn(head)
        self.classifier = nn.Linear(head, NUM_CLASSES)

    def forward(self, x):
        x = torch.clamp(self.bn1(self.conv_stem(x)), 0, 6)
        x = self.blocks(x)
        x = torch.clamp(self.bn2(self.conv_head(x)), 0, 6)
        return self.classifier(x.mean((2, 3)))


def torchvision_model():
    model = torchvision.models.mobilenet_v2(width_mult=WIDTH, num_classes=NUM_CLASSES)
    old = model.features[0][0]
    model.features[0][0] = nn.Conv2d(IN_CHANS, old.out_channels, 3, 2, 1, bias=False)
    return model


def randomize(model):
    # Distinct, non-trivial values everywhere, BN running statistics included: with the default
    # init (unit BN, zero statistics) a misloaded BN or a swapped tensor could go unseen.
    g = torch.Generator().manual_seed(20240602)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(100)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "Updp.Tests", "Fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    tv = torchvision_model().eval()
    randomize(tv)
    timm = TimmMobileNetV2().eval()
    tv_sd, timm_sd = tv.state_dict(), timm.state_dict()
    assert len(tv_sd) == len(timm_sd), (len(tv_sd), len(timm_sd))
    for (a, va), (b, vb) in zip(tv_sd.items(), timm_sd.items()):
        assert va.shape == vb.shape, (a, b, va.shape, vb.shape)
    timm.load_state_dict(OrderedDict((b, va.clone()) for (_, va), b in zip(tv_sd.items(), timm_sd.keys())))

    x = torch.randn(4, IN_CHANS, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = tv(x)
        logits_timm = timm(x)
    diff = (logits - logits_timm).abs().max().item()
    assert diff < 1e-5, f"the timm-structured model does not compute torchvision's function: max |diff| {diff}"

    torch.save(OrderedDict((k, v.clone().contiguous()) for k, v in tv.state_dict().items()),
               os.path.join(out, "mobilenetv2_050_torchvision.pt"))
    torch.save(OrderedDict((k, v.clone().contiguous()) for k, v in timm.state_dict().items()),
               os.path.join(out, "mobilenetv2_050_timm.pt"))
    write_safetensors(os.path.join(out, "mobilenetv2_050_io.safetensors"), OrderedDict([("input", x), ("logits", logits)]))

    n = sum(p.numel() for p in tv.parameters())
    print(f"params {n}; logits range [{logits.min():.3f}, {logits.max():.3f}]; max |torchvision - timm| {diff:.2e}")


if __name__ == "__main__":
    main()
