#!/usr/bin/python3
"""Writes the image-transform fixtures used by tests/Updp.Tests: PNG images and what torchvision
(and so timm) makes of them, to check the C# image loading and transforms against exactly.

Run from the repository root with Debian bookworm's packages (apt-get install python3-torch
python3-torchvision python3-pil python3-numpy), with Debian's python, not a pyenv one:

    /usr/bin/python3 tools/make_transform_fixture.py [OUTPUT_DIR]

OUTPUT_DIR defaults to tests/Updp.Tests/Fixtures/transforms. Made with python3-torch 1.13.1+dfsg-4
(torch.__version__ says 1.13.0a0), python3-torchvision 0.14.1-2 (0.14.1a0), python3-pil
9.4.0-1.1+deb12u1 (Pillow 9.4.0) and python3-numpy 1.24.2, on CPU. The output is deterministic
(fixed seeds, no timestamps; two runs give byte-identical files). The PNG bytes also depend on
the zlib build; the pixels they decode to do not. Every expected tensor is computed from the PNG
as read back from disk, the way the C# side reads it. It writes:

  <mode>_<W>x<H>.png  Images made from seeded random content with structure (gradients, a
                      sinusoid, rectangles, ellipses, thin lines, noise), W x H as PIL sizes:
                      rgb_97x61, rgb_300x200 (strong downscale), rgb_20x27 (upscale), l_40x75,
                      p_50x50 (median-cut quantized RGB, 48 colours, dithered), rgba_33x47 (alpha
                      varies from 0 to 255; colour under alpha 0 kept), la_25x25, i16_30x30 (16-bit
                      grey PNG, values 0..~520: Pillow 9.4 reads it back as mode "I", and its
                      convert("RGB"/"L") clamps each value to 0..255, it does not scale by 1/257).
  transforms.safetensors
                      float32 tensors (fixture_io.write_safetensors), named as listed below.
  transforms.json     {"generator", "versions", "images": [...], "cases": [...]}; each case names
                      its tensor, its image file, the conversion and the op with its parameters.

The cases, for image <stem> (file <stem>.png), opened with PIL.Image.open and converted with
img.convert("RGB") (timm's loader does this) or img.convert("L") ("convert" in the case):
  <stem>/rgb, <stem>/l          op "decode": the pixels after convert("RGB") / convert("L"), HWC
                                [H, W, 3] / [H, W, 1], values 0..255 as float32, not normalized.
                                Not written for rgb_300x200 (see SIZE BUDGET below).
  <stem>/eval_<c>_<size>_<crop_pct>_<interp>
                                op "eval", timm's eval transform: scale_size =
                                math.floor(size / crop_pct); Resize(scale_size, interp),
                                CenterCrop(size), ToTensor(), Normalize(mean, std). CHW.
  <stem>/rc_<c>_t<top>_l<left>_h<height>_w<width>_s<size>_<interp>[_flip]
                                op "resized_crop": F.resized_crop(img, top, left, height, width,
                                [size, size], interp), then F.hflip when "flip", ToTensor(),
                                Normalize(mean, std). CHW.
<c> is rgb or l, <interp> bicubic or bilinear. mean/std are ImageNet's (0.485, 0.456, 0.406) /
(0.229, 0.224, 0.225) for RGB and (0.5,) / (0.5,) for L. Per image there are three crop boxes
drawn with random.Random: the whole image, a thin strip and a random box.

SIZE BUDGET. The full grid (every image x sizes 32/64 x crop_pct 0.875/1.0 x both
interpolations, every box x sizes 32/48 x both interpolations x flip, decode of every image) would
be ~10 MB of float32; the fixture is ~1.6 MB instead (0.6 MB of it the one 224 case). The cases are
listed per image in EVAL_CASES and CROP_CASES, and check_coverage() asserts what they cover: for
RGB every (crop_pct, interpolation) pair at size 32 and every (size, interpolation, flip) of
resized_crop; for L every pair at sizes 32 and 64 (the resampler is the same per channel, so size
64 is mostly tested on the cheaper L path). Size 224 occurs once (rgb_300x200, crop_pct 0.875,
bicubic: timm's ImageNet default, Resize(256) then CenterCrop(224)). rgb_300x200 has no decode
tensors (they would be 1.2 MB for the plainest decode path, which rgb_97x61 also covers).

WHAT TORCHVISION 0.14 DOES (quoted from /usr/lib/python3/dist-packages/torchvision/transforms/):

Resize(int) -- functional.py, _compute_resized_output_size, with size = [s]:
        h, w = image_size
        short, long = (w, h) if w <= h else (h, w)
        requested_new_short = size if isinstance(size, int) else size[0]
        new_short, new_long = requested_new_short, int(requested_new_short * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    i.e. the shorter side (the width when w == h) becomes s and the long side is
    int(s * long / short): the exact integer product s * long, divided by short in float64,
    truncated toward zero (97x61 -> Resize(36) -> 57x36, since 36 * 97 / 61 = 57.25). resize() then returns the
    image unchanged if (h, w) already equals the output size, and otherwise for a PIL image calls
    functional_pil.resize: img.resize((new_w, new_h), pil_filter) (BILINEAR -> 2, BICUBIC -> 3;
    the antialias argument is ignored for PIL images, Pillow always antialiases).

CenterCrop(size) -- functional.py, center_crop (padding only when the crop is larger than the
image, which never happens after Resize(floor(size / crop_pct)) with crop_pct <= 1):
        crop_top = int(round((image_height - crop_height) / 2.0))
        crop_left = int(round((image_width - crop_width) / 2.0))
    Python's round is half-to-even: (57 - 32) / 2 = 12.5 -> 12, (59 - 32) / 2 = 13.5 -> 14.
    The crop is PIL's img.crop((left, top, left + width, top + height)).

resized_crop -- functional.py: img = crop(img, top, left, height, width); img = resize(img, size,
    interpolation). So the resampling sees only the cropped pixels: the filter is clipped at the
    crop's edges, not at the image's. With size = [S, S] the output is S x S exactly (no-op if
    the crop is already S x S). hflip on PIL is img.transpose(FLIP_LEFT_RIGHT).

RandomResizedCrop.get_params(img, scale, ratio) -- transforms.py (not used for the fixture's
    fixed boxes, quoted for the C# implementation; scale=(0.08, 1.0), ratio=(3/4, 4/3) default):
        _, height, width = F.get_dimensions(img)
        area = height * width

        log_ratio = torch.log(torch.tensor(ratio))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
            aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()

            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))

            if 0 < w <= width and 0 < h <= height:
                i = torch.randint(0, height - h + 1, size=(1,)).item()
                j = torch.randint(0, width - w + 1, size=(1,)).item()
                return i, j, h, w

        # Fallback to central crop
        in_ratio = float(width) / float(height)
        if in_ratio < min(ratio):
            w = width
            h = int(round(w / min(ratio)))
        elif in_ratio > max(ratio):
            h = height
            w = int(round(h * max(ratio)))
        else:  # whole image
            w = width
            h = height
        i = (height - h) // 2
        j = (width - w) // 2
        return i, j, h, w
    (the uniform draws are float32, log_ratio is a float32 tensor, round is half-to-even; the
    forward is F.resized_crop(img, i, j, h, w, self.size, self.interpolation)).

ToTensor (functional.py, to_tensor): uint8 HWC -> CHW, .to(float32).div(255), a float32 true
    division (checked below: not a multiplication by 1/255). Normalize (functional_tensor.py):
    tensor.sub_(mean).div_(std) with mean and std as float32 tensors, again true divisions. So in
    float32: ((float)v / 255f - (float)mean[c]) / (float)std[c].

WHAT PILLOW 9.4 DOES in Image.resize for modes L and RGB (the images are converted first; Pillow
would resample RGBA/LA premultiplied, and P/1 with NEAREST): src/libImaging/Resample.c at
Pillow's git tag 9.4.0 (Debian's python3-pil does not ship the C source), an
antialiased separable filter in 8-bit fixed point, horizontal pass first, then vertical on the
horizontally resampled 8-bit image. Per axis (in0 = 0, in1 = inSize for a full-image resize):
    scale = filterscale = inSize / outSize (double); filterscale = max(filterscale, 1.0)
    support = filter_support * filterscale        (bilinear 1.0, bicubic 2.0)
    for each output xx: center = (xx + 0.5) * scale; ss = 1.0 / filterscale
        xmin = max(0, (int)(center - support + 0.5)); xmax = min(inSize, (int)(center + support
        + 0.5)) - xmin; w[x] = filter((x + xmin - center + 0.5) * ss) for x < xmax, then each
        w[x] /= sum(w) (sum accumulated in order, double; skipped if the sum is 0)
    fixed point: k = (int)(w * (1 << 22) + (w < 0 ? -0.5 : 0.5))   (PRECISION_BITS = 22)
    pixel: acc = (1 << 21) + sum over x of src[xmin + x] * k[x] (int32);
        out = clamp(acc >> 22, 0, 255) (arithmetic shift; Pillow's clip8 lookup table)
    bilinear(x) = max(0, 1 - |x|); bicubic (a = -0.5): |x| < 1: ((a + 2)|x| - (a + 3))|x|^2 + 1,
    |x| < 2: (((|x| - 5)|x| + 8)|x| - 4) * a, else 0 (each evaluated in double, as written).
    A pass runs only if that axis's size changes (need_horizontal = xsize != imIn->xsize || ...).
The script checks that a numpy transcription of exactly these rules (pillow_resize below)
reproduces every Pillow resize the fixture makes, and that the recorded resize sizes and crop
offsets reproduce torchvision's output.

PIL's conversions involved (src/libImaging/Convert.c, 9.4): RGB/RGBA/P -> L is
(R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16 (on the palette colour for P); RGBA -> RGB and
LA -> L drop alpha (no compositing); L/LA -> RGB replicate L; P -> RGB looks up the palette; I
(16-bit PNG) -> L/RGB clamps to 0..255.
"""

import hashlib
import json
import math
import os
import random
import sys
import zlib
from collections import OrderedDict

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageDraw
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision import transforms as T

from fixture_io import write_safetensors  # tools/ is on sys.path when run as tools/<script>.py

SEED = 20240801
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.5,)
GRAY_STD = (0.5,)
INTERPS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}

# (stem, PIL mode, width, height). The index seeds the image content and the crop boxes.
IMAGES = [
    ("rgb_97x61", "RGB", 97, 61),
    ("rgb_300x200", "RGB", 300, 200),
    ("rgb_20x27", "RGB", 20, 27),
    ("l_40x75", "L", 40, 75),
    ("p_50x50", "P", 50, 50),
    ("rgba_33x47", "RGBA", 33, 47),
    ("la_25x25", "LA", 25, 25),
    ("i16_30x30", "I;16", 30, 30),
]
NO_DECODE = {"rgb_300x200"}


# ---------------------------------------------------------------------------------------------
# Images

def structured(rng, w, h, channels, noise):
    """uint8 [h, w, channels]: per-channel gradients and a sinusoid, shapes, then noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for _ in range(channels):
        a, b = rng.uniform(-160, 160, size=2)
        fx, fy = rng.uniform(0.5, 3.0, size=2)
        phase = rng.uniform(0, 2 * math.pi)
        p = 128 + a * (x / w - 0.5) + b * (y / h - 0.5) + 40 * np.sin(
            2 * math.pi * (fx * x / w + fy * y / h) + phase)
        planes.append(p)
    base = np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)
    img = Image.fromarray(base if channels > 1 else base[:, :, 0], "RGB" if channels == 3 else "L")
    draw = ImageDraw.Draw(img)

    def colour():
        c = tuple(int(v) for v in rng.randint(0, 256, size=channels))
        return c if channels > 1 else c[0]

    def box():
        x0, x1 = sorted(int(v) for v in rng.randint(0, w, size=2))
        y0, y1 = sorted(int(v) for v in rng.randint(0, h, size=2))
        return [x0, y0, x1 + 1, y1 + 1]

    for _ in range(2):
        draw.rectangle(box(), fill=colour())
    for _ in range(2):
        draw.ellipse(box(), fill=colour(), outline=colour())
    for _ in range(3):
        draw.line(box(), fill=colour(), width=1)
    arr = np.asarray(img, dtype=np.float64).reshape(h, w, channels)
    arr = arr + rng.normal(0, noise, size=arr.shape)
    # Some pure black and white pixels, so clamping in the resampler is exercised.
    salt = rng.uniform(size=(h, w)) < 0.01
    arr[salt] = 255 * (rng.uniform(size=(int(salt.sum()), 1)) < 0.5)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def make_image(index, mode, w, h):
    rng = np.random.RandomState(SEED + index)
    noise = 0.0 if w * h > 20000 else 8.0  # noise would make the big PNG ~90 KB
    if mode == "RGB":
        return Image.fromarray(structured(rng, w, h, 3, noise), "RGB")
    if mode == "L":
        return Image.fromarray(structured(rng, w, h, 1, noise)[:, :, 0], "L")
    if mode == "P":
        rgb = Image.fromarray(structured(rng, w, h, 3, noise), "RGB")
        return rgb.quantize(colors=48, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    if mode in ("RGBA", "LA"):
        colour = structured(rng, w, h, 3 if mode == "RGBA" else 1, noise)
        alpha = structured(rng, w, h, 1, noise)
        alpha[: h // 4, : w // 4] = 0      # fully transparent corner, colour kept under it
        alpha[-(h // 4):, -(w // 4):] = 255
        return Image.fromarray(np.concatenate([colour, alpha], axis=-1), mode)
    if mode == "I;16":
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        v = 450 * (x + y) / (w + h - 2) + 60 * np.sin(2 * math.pi * x / 7) + rng.normal(0, 20, size=(h, w))
        v[h // 3: h // 2, w // 4: 3 * w // 4] = 255   # a block at the clamp edge
        v[h // 2: h // 2 + 2, :] = 256
        arr = np.clip(np.rint(v), 0, 65535).astype("<u2")
        img = Image.new("I;16", (w, h))
        img.frombytes(arr.tobytes())
        return img
    raise ValueError(mode)


# ---------------------------------------------------------------------------------------------
# Pillow's resampling, transcribed (used only to check the rules the docstring states)

def _bilinear(x):
    x = -x if x < 0.0 else x
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x):
    a = -0.5
    x = -x if x < 0.0 else x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


FILTERS = {"bilinear": (_bilinear, 1.0), "bicubic": (_bicubic, 2.0)}


def _coeffs(in_size, out_size, interp):
    filt, support0 = FILTERS[interp]
    scale = filterscale = float(in_size) / out_size
    if filterscale < 1.0:
        filterscale = 1.0
    support = support0 * filterscale
    rows = []
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(0, int(center - support + 0.5))
        xmax = min(in_size, int(center + support + 0.5)) - xmin
        w = [filt((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for v in w:
            ww += v
        if ww != 0.0:
            w = [v / ww for v in w]
        k = [int(-0.5 + v * (1 << 22)) if v < 0 else int(0.5 + v * (1 << 22)) for v in w]
        rows.append((xmin, np.array(k, dtype=np.int64)))
    return rows


def _pass(arr, out_size, interp, axis):
    """One 8-bit pass along axis (1 = horizontal, 0 = vertical) of uint8 [H, W, C]."""
    src = np.moveaxis(arr.astype(np.int64), axis, 0)
    out = np.empty((out_size,) + src.shape[1:], dtype=np.int64)
    for i, (xmin, k) in enumerate(_coeffs(src.shape[0], out_size, interp)):
        acc = (1 << 21) + np.tensordot(k, src[xmin: xmin + len(k)], axes=(0, 0))
        out[i] = np.clip(acc >> 22, 0, 255)
    return np.moveaxis(out, 0, axis).astype(np.uint8)


def pillow_resize(arr, out_w, out_h, interp):
    if out_w != arr.shape[1]:
        arr = _pass(arr, out_w, interp, axis=1)
    if out_h != arr.shape[0]:
        arr = _pass(arr, out_h, interp, axis=0)
    return arr


# ---------------------------------------------------------------------------------------------
# Cases

def to_normalized(img, mean, std):
    return F.normalize(F.to_tensor(img), list(mean), list(std))


def pixels(img):
    """uint8 [H, W, C] of an L or RGB PIL image."""
    a = np.asarray(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def check_normalized(tensor, u8, mean, std):
    ref = (u8.astype(np.float32) / np.float32(255) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    assert np.array_equal(tensor.numpy(), ref.transpose(2, 0, 1)), "ToTensor/Normalize rule"


# The cases, per (image stem, convert). RGB has every (crop_pct, interpolation) pair of the eval
# transform at size 32 and every (size, interpolation, flip) of resized_crop; size 64 (12 KB per
# L tensor, 48 KB per RGB one) is mostly on the L path, which has all four pairs at 64 (Pillow's
# resampler is the same per channel). Images that are grey to begin with get few RGB cases: their
# RGB resampling is the L one three times over. check_coverage() asserts this.
EVAL_CASES = {  # (size, crop_pct, interpolation)
    ("rgb_97x61", "RGB"): [(32, 0.875, "bicubic"), (32, 1.0, "bilinear"), (64, 0.875, "bilinear")],
    ("rgb_300x200", "RGB"): [(32, 0.875, "bilinear"), (32, 1.0, "bicubic"), (224, 0.875, "bicubic")],
    ("rgb_20x27", "RGB"): [(32, 0.875, "bicubic"), (32, 1.0, "bilinear")],
    ("p_50x50", "RGB"): [(32, 0.875, "bilinear"), (32, 1.0, "bicubic")],
    ("rgba_33x47", "RGB"): [(32, 0.875, "bicubic"), (32, 1.0, "bilinear")],
    ("l_40x75", "RGB"): [(32, 0.875, "bilinear")],
    ("la_25x25", "RGB"): [(32, 1.0, "bicubic")],
    ("i16_30x30", "RGB"): [(32, 0.875, "bicubic")],
    ("rgb_97x61", "L"): [(32, 0.875, "bilinear"), (32, 1.0, "bicubic")],
    ("l_40x75", "L"): [(32, 0.875, "bicubic"), (32, 1.0, "bilinear"), (64, 0.875, "bicubic"),
                       (64, 1.0, "bilinear")],
    ("la_25x25", "L"): [(32, 0.875, "bilinear"), (32, 1.0, "bicubic"), (64, 0.875, "bilinear")],
    ("i16_30x30", "L"): [(32, 0.875, "bicubic"), (64, 1.0, "bicubic")],
}
CROP_CASES = {  # (box: 0 whole image, 1 thin strip, 2 random; size; interpolation; flip)
    ("rgb_97x61", "RGB"): [(0, 32, "bicubic", False), (1, 32, "bilinear", True), (2, 48, "bicubic", True)],
    ("rgb_300x200", "RGB"): [(0, 32, "bilinear", False), (1, 32, "bicubic", True), (2, 48, "bilinear", False)],
    ("rgb_20x27", "RGB"): [(0, 48, "bicubic", False), (1, 32, "bilinear", False), (2, 32, "bicubic", True)],
    ("p_50x50", "RGB"): [(0, 32, "bicubic", True), (1, 48, "bilinear", True), (2, 32, "bilinear", False)],
    ("rgba_33x47", "RGB"): [(0, 32, "bilinear", True), (1, 32, "bicubic", False), (2, 32, "bicubic", False)],
    ("l_40x75", "RGB"): [(2, 32, "bilinear", True)],
    ("la_25x25", "RGB"): [(0, 32, "bicubic", False)],
    ("i16_30x30", "RGB"): [(1, 32, "bicubic", True)],
    ("l_40x75", "L"): [(0, 32, "bilinear", False), (1, 48, "bicubic", False), (2, 32, "bicubic", True)],
    ("la_25x25", "L"): [(0, 48, "bilinear", True), (1, 32, "bilinear", True), (2, 32, "bicubic", False)],
    ("i16_30x30", "L"): [(0, 32, "bicubic", True), (1, 32, "bilinear", False), (2, 48, "bicubic", False)],
}


def crop_boxes(index, w, h):
    """Three (top, left, height, width): the whole image, a thin strip, a random box."""
    r = random.Random(SEED * 10 + index)
    boxes = [(0, 0, h, w)]
    if index % 2 == 0:   # horizontal strip
        bh, bw = r.randint(1, max(2, h // 8)), r.randint(w // 2, w)
    else:                # vertical strip
        bh, bw = r.randint(h // 2, h), r.randint(1, max(2, w // 8))
    boxes.append((r.randint(0, h - bh), r.randint(0, w - bw), bh, bw))
    bh, bw = r.randint(max(1, h // 4), h), r.randint(max(1, w // 4), w)
    boxes.append((r.randint(0, h - bh), r.randint(0, w - bw), bh, bw))
    return boxes


def check_coverage():
    pairs = {(cp, ip) for cp in (0.875, 1.0) for ip in INTERPS}
    for convert, size in (("RGB", 32), ("L", 32), ("L", 64)):
        got = {(cp, ip) for (s, cv), cs in EVAL_CASES.items() if cv == convert for sz, cp, ip in cs if sz == size}
        assert pairs <= got, (convert, size, pairs - got)
    got = {c[1:] for (s, cv), cs in CROP_CASES.items() if cv == "RGB" for c in cs}
    want = {(size, ip, fl) for size in (32, 48) for ip in INTERPS for fl in (False, True)}
    assert want <= got, want - got


def fmt(v):
    return "%g" % v


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "Updp.Tests", "Fixtures", "transforms")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    check_coverage()

    tensors = OrderedDict()
    cases = []
    images = []
    n_resizes = 0

    for index, (stem, mode, w, h) in enumerate(IMAGES):
        file = stem + ".png"
        path = os.path.join(out, file)
        make_image(index, mode, w, h).save(path, format="PNG")
        with Image.open(path) as im:
            im.load()
            src = im.copy()
        assert src.size == (w, h)
        converts = [c for c in ("RGB", "L") if (stem, c) in EVAL_CASES or (stem, c) in CROP_CASES]
        images.append(OrderedDict([("file", file), ("mode", mode), ("opened_mode", src.mode),
                                   ("width", w), ("height", h),
                                   ("sha256", sha256(path))]))

        # c. decoded + converted pixels
        if stem not in NO_DECODE:
            for convert in ("RGB", "L"):
                name = f"{stem}/{convert.lower()}"
                u8 = pixels(src.convert(convert))
                tensors[name] = torch.from_numpy(u8.astype(np.float32))
                cases.append(OrderedDict([("name", name), ("image", file), ("convert", convert),
                                          ("op", "decode"), ("layout", "HWC"), ("shape", list(u8.shape))]))

        for convert in converts:
            img = src.convert(convert)
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if convert == "RGB" else (GRAY_MEAN, GRAY_STD)
            u8 = pixels(img)

            # a. timm's eval transform
            for size, crop_pct, interp in EVAL_CASES.get((stem, convert), []):
                scale_size = math.floor(size / crop_pct)
                pipeline = T.Compose([T.Resize(scale_size, INTERPS[interp]), T.CenterCrop(size),
                                      T.ToTensor(), T.Normalize(mean, std)])
                result = pipeline(img)
                new_h, new_w = F._compute_resized_output_size((h, w), [scale_size])
                top = int(round((new_h - size) / 2.0))
                left = int(round((new_w - size) / 2.0))
                # The recorded sizes and offsets reproduce torchvision, and the transcribed
                # resampler reproduces Pillow.
                resized = img.resize((new_w, new_h), int(F.pil_modes_mapping[INTERPS[interp]])) \
                    if (new_h, new_w) != (h, w) else img
                assert np.array_equal(pixels(resized), pillow_resize(u8, new_w, new_h, interp))
                n_resizes += 1
                cropped = pixels(resized)[top: top + size, left: left + size]
                check_normalized(result, cropped, mean, std)
                name = f"{stem}/eval_{convert.lower()}_{size}_{fmt(crop_pct)}_{interp}"
                tensors[name] = result
                cases.append(OrderedDict([
                    ("name", name), ("image", file), ("convert", convert), ("op", "eval"),
                    ("size", size), ("crop_pct", crop_pct), ("interpolation", interp),
                    ("mean", list(mean)), ("std", list(std)), ("scale_size", scale_size),
                    ("resized_w", new_w), ("resized_h", new_h), ("crop_top", top), ("crop_left", left),
                    ("shape", list(result.shape))]))

            # b. resized_crop (+ hflip)
            boxes = crop_boxes(index, w, h)
            for b, size, interp, flip in CROP_CASES.get((stem, convert), []):
                top, left, bh, bw = boxes[b]
                r = F.resized_crop(img, top, left, bh, bw, [size, size], INTERPS[interp])
                ref = pillow_resize(u8[top: top + bh, left: left + bw], size, size, interp)
                assert np.array_equal(pixels(r), ref)
                n_resizes += 1
                if flip:
                    r = F.hflip(r)
                    ref = ref[:, ::-1]
                result = to_normalized(r, mean, std)
                check_normalized(result, ref, mean, std)
                name = (f"{stem}/rc_{convert.lower()}_t{top}_l{left}_h{bh}_w{bw}_s{size}_{interp}"
                        + ("_flip" if flip else ""))
                assert name not in tensors, name
                tensors[name] = result
                cases.append(OrderedDict([
                    ("name", name), ("image", file), ("convert", convert), ("op", "resized_crop"),
                    ("top", top), ("left", left), ("height", bh), ("width", bw), ("size", size),
                    ("interpolation", interp), ("flip", flip),
                    ("mean", list(mean)), ("std", list(std)), ("shape", list(result.shape))]))

    write_safetensors(os.path.join(out, "transforms.safetensors"), tensors)
    manifest = OrderedDict([
        ("generator", "tools/make_transform_fixture.py"),
        ("versions", OrderedDict([("torch", torch.__version__), ("torchvision", torchvision.__version__),
                                  ("pillow", PIL.__version__), ("numpy", np.__version__),
                                  ("zlib", zlib.ZLIB_RUNTIME_VERSION)])),
        ("images", images),
        ("cases", cases),
    ])
    with open(os.path.join(out, "transforms.json"), "w") as f:
        # One image or case per line: small, and diffs stay readable.
        f.write("{\n")
        for i, (key, value) in enumerate(manifest.items()):
            f.write(f" {json.dumps(key)}: ")
            if isinstance(value, list):
                f.write("[\n" + ",\n".join("  " + json.dumps(v) for v in value) + "\n ]")
            else:
                f.write(json.dumps(value))
            f.write(",\n" if i < len(manifest) - 1 else "\n")
        f.write("}\n")

    ops = {}
    for c in cases:
        ops[c["op"]] = ops.get(c["op"], 0) + 1
    total = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    print(f"{len(tensors)} tensors {ops}; {n_resizes} Pillow resizes matched the transcription; "
          f"{total / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    main()
