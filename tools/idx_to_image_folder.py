#!/usr/bin/python3
"""Writes an MNIST-style idx data set (e.g. Fashion-MNIST) out as an image folder of PNG files.

    python3 tools/idx_to_image_folder.py [IDX_DIR] OUT_DIR [--limit N]

IDX_DIR defaults to /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist). Writes
OUT_DIR/train/<class>/<index>.png and OUT_DIR/test/<class>/<index>.png, 8-bit grayscale, with the
class names of Fashion-MNIST ('/' in "T-shirt/top" becomes '-') when the directory is
fashion-mnist, otherwise the digits. Only the standard library is used (zlib for PNG), so it runs on
a fresh machine; the files decode to exactly the idx bytes. --limit N writes the first N images of
each split. Used for the folder-loader check in docs/RESULTS.md.
"""

import gzip
import os
import struct
import sys
import zlib

FASHION = ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]


def find(directory, base):
    for name in (base, base + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise SystemExit(f"{directory} has no {base}[.gz]")


def png_gray(width, height, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    limit = None
    if "--limit" in argv:
        limit = int(argv[argv.index("--limit") + 1])
        args.remove(str(limit))
    if len(args) == 1:
        idx_dir, out = "/usr/share/datasets/fashion-mnist", args[0]
    elif len(args) == 2:
        idx_dir, out = args
    else:
        raise SystemExit(__doc__)
    names = FASHION if "fashion" in os.path.basename(os.path.normpath(idx_dir)) else [str(i) for i in range(10)]
    for split, prefix in (("train", "train"), ("test", "t10k")):
        (count, rows, cols), pixels = read_idx(find(idx_dir, f"{prefix}-images-idx3-ubyte"))
        _, labels = read_idx(find(idx_dir, f"{prefix}-labels-idx1-ubyte"))
        n = count if limit is None else min(limit, count)
        for i in range(n):
            folder = os.path.join(out, split, names[labels[i]])
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{i:05d}.png"), "wb") as f:
                f.write(png_gray(cols, rows, pixels[i * rows * cols:(i + 1) * rows * cols]))
        print(f"{split}: {n} images of {rows}x{cols} -> {os.path.join(out, split)}")


if __name__ == "__main__":
    main(sys.argv[1:])
