#!/usr/bin/python3
"""Writes the ResNet checkpoint fixtures used by tests/Updp.Tests (ResNet tests).

Run from the repository root with Debian's PyTorch and torchvision
(apt-get install python3-torch python3-torchvision):

    /usr/bin/python3 tools/make_resnet_fixture.py [OUTPUT_DIR]

OUTPUT_DIR defaults to tests/Updp.Tests/Fixtures. The output is deterministic for a given PyTorch
build (fixed seed); it was made with PyTorch 1.13 and torchvision 0.14 on CPU. The models are
torchvision's own ResNet, BasicBlock and Bottleneck classes (so the names are torchvision's by
construction), made small by rebuilding the stem and the four layers with torchvision's
_make_layer at a reduced width. It writes:

  resnet_basic_w16.pt        BasicBlock, layers [1, 1, 1, 1], widths 16-32-64-128, in_chans 1,
                             10 classes, small-input stem: conv1 3x3 stride 1, no max-pool.
                             A flat state dict, as torch.save(model.state_dict(), path) writes it.
  resnet_bottleneck_w8.pt    Bottleneck, layers [1, 1, 1, 1], planes 8-16-32-64 (x4 out), in_chans
                             1, 10 classes, torchvision's stem (conv1 7x7 stride 2, 3x3 max-pool).
                             Saved nested with DataParallel's prefix:
                             {"epoch": 3, "state_dict": {"module.<name>": ...}}.
  resnet_io.safetensors      "input" [4, 1, 32, 32] float32 and the eval-mode logits PyTorch
                             computed from it: "logits_basic" and "logits_bottleneck" [4, 10].
  resnet_torchvision_names.json
                             {model: {name: shape}} of torchvision's resnet18, resnet34 and
                             resnet50 state dicts (1000 classes), parameters and buffers, plus
                             {model: parameter count} under "params".
"""

import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from fixture_io import write_safetensors  # tools/ is on sys.path when run as tools/<script>.py

IN_CHANS = 1
NUM_CLASSES = 10


def small_resnet(block, width, small_stem):
    """torchvision's ResNet with layers [1, 1, 1, 1] and layer widths width·2^i."""
    model = ResNet(block, [1, 1, 1, 1], num_classes=NUM_CLASSES)
    if small_stem:
        model.conv1 = nn.Conv2d(IN_CHANS, width, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(IN_CHANS, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.inplanes = width
    model.layer1 = model._make_layer(block, width, 1)
    model.layer2 = model._make_layer(block, 2 * width, 1, stride=2)
    model.layer3 = model._make_layer(block, 4 * width, 1, stride=2)
    model.layer4 = model._make_layer(block, 8 * width, 1, stride=2)
    model.fc = nn.Linear(8 * width * block.expansion, NUM_CLASSES)
    return model


def randomize(model, seed):
    # Every tensor gets a distinct, non-trivial value, BN running statistics included: with
    # torchvision's init (unit BN scales, zero shifts, fresh statistics) a misloaded BN buffer
    # would go unseen.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "Updp.Tests", "Fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    basic = small_resnet(BasicBlock, 16, small_stem=True).eval()
    randomize(basic, 20240701)
    bottleneck = small_resnet(Bottleneck, 8, small_stem=False).eval()
    randomize(bottleneck, 20240702)

    x = torch.randn(4, IN_CHANS, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits_basic = basic(x)
        logits_bottleneck = bottleneck(x)

    torch.save(OrderedDict((k, v.clone().contiguous()) for k, v in basic.state_dict().items()),
               os.path.join(out, "resnet_basic_w16.pt"))
    torch.save({"epoch": 3, "state_dict": OrderedDict(
        ("module." + k, v.clone().contiguous()) for k, v in bottleneck.state_dict().items())},
        os.path.join(out, "resnet_bottleneck_w8.pt"))
    write_safetensors(os.path.join(out, "resnet_io.safetensors"), OrderedDict(
        [("input", x), ("logits_basic", logits_basic), ("logits_bottleneck", logits_bottleneck)]))

    names = {"params": {}}
    for name, factory in [("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50)]:
        model = factory()
        names[name] = OrderedDict((k, list(v.shape)) for k, v in model.state_dict().items())
        names["params"][name] = sum(p.numel() for p in model.parameters())
    with open(os.path.join(out, "resnet_torchvision_names.json"), "w") as f:
        json.dump(names, f, separators=(",", ":"))
        f.write("\n")

    for label, model, logits in [("basic", basic, logits_basic), ("bottleneck", bottleneck, logits_bottleneck)]:
        n = sum(p.numel() for p in model.parameters())
        print(f"{label}: params {n}; logits range [{logits.min():.3f}, {logits.max():.3f}]")
    print("torchvision params:", names["params"])


if __name__ == "__main__":
    main()
