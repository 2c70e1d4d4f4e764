#!/usr/bin/python3
"""Writes the DeiT checkpoint fixtures used by tests/Updp.Tests/Checkpoints.

Run from the repository root with Debian's PyTorch (timm is not needed):

    /usr/bin/python3 tools/make_deit_fixture.py [OUTPUT_DIR]

OUTPUT_DIR defaults to tests/Updp.Tests/Fixtures. The output is deterministic for a given PyTorch
build (fixed seed); it was made with PyTorch 1.13 on CPU. It writes:

  deit_reduced.pt            a reduced DeiT (embed dim 48, depth 3, 3 heads, MLP ratio 4) for
                             32x32 one-channel inputs with patch 4 (64 patch tokens + the class
                             token) and 10 classes, saved as the official DeiT releases save it:
                             {"model": state_dict} with timm's names. deit_tiny at this input size
                             has 5.4 M parameters (21 MB), too large for a fixture; the reduced
                             width and depth exercise the same names and numerics.
  deit_reduced_io.safetensors
                             "input" [4, 1, 32, 32] float32 and "logits" [4, 10], the eval-mode
                             logits PyTorch computed from it. Written by write_safetensors below,
                             independently of the C# writer.

The modules here are plain PyTorch written for this fixture; only their names and numerics follow
timm's VisionTransformer as DeiT configures it (LayerNorm eps 1e-6, exact GELU, qkv with bias,
class-token pooling, no layer scale) with timm's explicit attention: softmax(q·scale @ k^T) @ v.
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixture_io import write_safetensors  # tools/ is on sys.path when run as tools/<script>.py

EMBED_DIM = 48
DEPTH = 3
NUM_HEADS = 3
MLP_RATIO = 4
PATCH = 4
IMG_SIZE = 32
IN_CHANS = 1
NUM_CLASSES = 10
EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(IN_CHANS, EMBED_DIM, PATCH, stride=PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, dim * MLP_RATIO)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DeiT(nn.Module):
    def __init__(self):
        super().__init__()
        grid = IMG_SIZE // PATCH
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, EMBED_DIM))
        self.patch_embed = PatchEmbed()
        self.blocks = nn.Sequential(*[Block(EMBED_DIM, NUM_HEADS) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(EMBED_DIM, eps=EPS)
        self.head = nn.Linear(EMBED_DIM, NUM_CLASSES)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def randomize(model):
    # Every parameter gets a distinct, non-trivial value: with timm's init (unit norms, zero biases,
    # a near-zero class token) a misloaded tensor could hardly change the logits.
    g = torch.Generator().manual_seed(20240602)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("cls_token", "pos_embed"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "Updp.Tests", "Fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    model = DeiT().eval()
    randomize(model)
    x = torch.randn(4, IN_CHANS, IMG_SIZE, IMG_SIZE, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        logits = model(x)

    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"model": state}, os.path.join(out, "deit_reduced.pt"))
    write_safetensors(os.path.join(out, "deit_reduced_io.safetensors"), {"input": x, "logits": logits})

    n = sum(p.numel() for p in model.parameters())
    print(f"params {n}; logits range [{logits.min():.3f}, {logits.max():.3f}]")


if __name__ == "__main__":
    main()
