#!/usr/bin/python3
"""Writes a small RGB image-folder data set of shapes, for examples and quick checks.

    python3 tools/make_shapes_folder.py OUT_DIR [--train N] [--test N] [--seed S]

Four classes (circle, square, triangle, cross), each drawn in a random colour, size and position on
a random two-colour gradient background with pixel noise, in images of assorted sizes (48–160 px
per side, any aspect): OUT_DIR/train/<class>/*.png (N per class, default 150) and
OUT_DIR/test/<class>/*.png (default 40). Standard library only (PNG via zlib), deterministic for a
seed, so it runs on a fresh machine.
"""

import math
import os
import random
import struct
import sys
import zlib

CLASSES = ["circle", "cross", "square", "triangle"]


def png_rgb(width, height, rows):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(row) for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def inside(shape, x, y, cx, cy, r):
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return abs(dx) <= r * 0.85 and abs(dy) <= r * 0.85
    if shape == "cross":
        return (abs(dx) <= r * 0.3 and abs(dy) <= r) or (abs(dy) <= r * 0.3 and abs(dx) <= r)
    # triangle pointing up
    return -r <= dy <= r * 0.8 and abs(dx) <= (dy + r) * 0.55


def image(shape, rnd):
    w, h = rnd.randint(48, 160), rnd.randint(48, 160)
    c0 = [rnd.randint(0, 255) for _ in range(3)]
    c1 = [rnd.randint(0, 255) for _ in range(3)]
    fg = [rnd.randint(0, 255) for _ in range(3)]
    while sum(abs(a - b) for a, b in zip(fg, c0)) < 150:
        fg = [rnd.randint(0, 255) for _ in range(3)]
    r = rnd.uniform(0.2, 0.4) * min(w, h)
    cx, cy = rnd.uniform(r, w - r), rnd.uniform(r, h - r)
    angle = rnd.uniform(0, math.tau)
    rows = []
    for y in range(h):
        row = []
        for x in range(w):
            t = (x * math.cos(angle) + y * math.sin(angle)) / (w + h) + 0.5
            colour = fg if inside(shape, x, y, cx, cy, r) else [a + (b - a) * t for a, b in zip(c0, c1)]
            n = rnd.randint(-12, 12)
            row.extend(max(0, min(255, int(v + n))) for v in colour)
        rows.append(row)
    return w, h, rows


def main(argv):
    if not argv or argv[0].startswith("--"):
        raise SystemExit(__doc__)
    out = argv[0]
    opts = dict(zip(argv[1::2], argv[2::2]))
    counts = {"train": int(opts.get("--train", 150)), "test": int(opts.get("--test", 40))}
    rnd = random.Random(int(opts.get("--seed", 0)))
    for split, n in counts.items():
        for shape in CLASSES:
            folder = os.path.join(out, split, shape)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                w, h, rows = image(shape, rnd)
                with open(os.path.join(folder, f"{shape}_{i:04d}.png"), "wb") as f:
                    f.write(png_rgb(w, h, rows))
        print(f"{split}: {n} images per class, {len(CLASSES)} classes -> {os.path.join(out, split)}")


if __name__ == "__main__":
    main(sys.argv[1:])
