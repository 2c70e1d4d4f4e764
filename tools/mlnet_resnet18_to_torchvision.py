#!/usr/bin/python3
"""Writes ML.NET's ImageNet-trained ResNet-18 featurizer as a torchvision resnet18 state dict.

    python3 tools/mlnet_resnet18_to_torchvision.py PACKAGE_DIR OUT.safetensors [--drop-block 1|2|none]

Why: this machine has no ImageNet checkpoint and no internet, but the NuGet package
Microsoft.ML.DnnImageFeaturizer.ResNet18 (MIT) carries an ImageNet-trained ResNet-18 as ONNX
(tools/DnnImageModels/ResNet18Onnx/ResNet18.onnx, converted by Microsoft from CNTK, plus
ResNetPrepOnnx/ResNetPreprocess.onnx). It is the only pretrained network we can reach, so the
fine-tuning recipe of docs/RESULTS.md ("Fine-tuning from ImageNet weights") was measured on it.
bench/finetune_recipe.sh restores the package and calls this script; the weights are never committed.

What differs from torchvision's resnet18, and what this script does about it:
- The network's last stage has three BasicBlocks, not two. The block given by --drop-block (default
  2, the last) is left out: a residual block removed from a trained ResNet costs little, which is
  what depth pruning relies on. The script prints which one.
- The input is BGR in 0..255 minus a mean image. Our models take RGB normalised by ImageNet's
  mean/std, so the stem conv is folded: its input channels reversed and scaled by 255·std, and the
  constant left over (255·mean minus the mean image's per-channel average, through the conv) moved
  into bn1's running mean. Exact inside the image; the zero padding at the borders now stands for
  the mean colour instead of the mean image, a small difference fine-tuning absorbs.
- Strides and paddings: CNTK pads (begin 1, end 0) where torchvision pads 1 on both sides; for
  even-sized maps both place the same windows, so nothing changes.
- No classifier: the featurizer ends at the pooled 512 features. fc.weight/fc.bias are written as
  zeros for 1000 classes so the file is a complete resnet18 state dict; `updp train --pretrained`
  re-initialises them for the data's classes anyway (and says so).
Standard library only (a protobuf reader of the few ONNX fields used, safetensors written by hand).
"""

import array
import json
import os
import struct
import sys

ONNX = os.path.join("tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx")
PREP = os.path.join("tools", "DnnImageModels", "ResNetPrepOnnx", "ResNetPreprocess.onnx")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def varint(b, i):
    result = shift = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return result, i


def fields(b):
    """(field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(b, i)
        elif wire == 1:
            value, i = b[i:i + 8], i + 8
        elif wire == 5:
            value, i = b[i:i + 4], i + 4
        elif wire == 2:
            n, i = varint(b, i)
            value, i = b[i:i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {wire} is not used by ONNX")
        yield number, wire, value


def read_graph(path):
    """Initializers as name → (dims, float array) and nodes as (op, inputs, attributes)."""
    model = open(path, "rb").read()
    graph = next(v for f, _, v in fields(model) if f == 7)
    tensors, nodes = {}, []
    for f, _, v in fields(graph):
        if f == 5:  # TensorProto
            dims, name, values, raw = [], "", array.array("f"), None
            for ff, ww, vv in fields(v):
                if ff == 1:
                    if ww == 0:
                        dims.append(vv)
                    else:
                        j = 0
                        while j < len(vv):
                            d, j = varint(vv, j)
                            dims.append(d)
                elif ff == 2 and vv != 1:
                    raise ValueError(f"{path}: tensor of ONNX data type {vv}, expected float")
                elif ff == 4:
                    values.frombytes(vv)  # packed floats, or one fixed32 value
                elif ff == 8:
                    name = vv.decode()
                elif ff == 9:
                    raw = vv
            if raw is not None:
                values = array.array("f")
                values.frombytes(raw)
            if sys.byteorder != "little":
                values.byteswap()
            count = 1
            for d in dims:
                count *= d
            if len(values) != count:
                raise ValueError(f"{path}: tensor {name} has {len(values)} values for shape {dims}")
            tensors[name] = (dims, values)
        elif f == 1:  # NodeProto
            inputs, op, attrs = [], "", {}
            for ff, _, vv in fields(v):
                if ff == 1:
                    inputs.append(vv.decode())
                elif ff == 4:
                    op = vv.decode()
                elif ff == 5:
                    attr_name, ints = "", []
                    for a, _, c in fields(vv):
                        if a == 1:
                            attr_name = c.decode()
                        elif a == 8:
                            ints.append(c)
                    attrs[attr_name] = ints
            nodes.append((op, inputs, attrs))
    return tensors, nodes


def torchvision_names(nodes, drop_block):
    """Maps the graph's Conv/BatchNormalization nodes, in order, to torchvision's names."""
    convs = [(op, ins, attrs) for op, ins, attrs in nodes if op in ("Conv", "BatchNormalization")]
    layers = [[], [], [], []]  # per stage: list of blocks, each a list of (torch prefix, node)
    names = [("conv1", convs[0]), ("bn1", convs[1])]
    stage, block = 0, []
    # After the stem, a block is conv/bn, conv/bn, optionally preceded by a 1×1 stride-2
    # projection conv/bn (CNTK emits the shortcut first), which starts a new stage.
    i = 2
    while i < len(convs):
        kernel = convs[i][2].get("kernel_shape")
        if kernel == [1, 1]:
            stage += 1
            block = [("downsample.0", convs[i]), ("downsample.1", convs[i + 1])]
            i += 2
            continue
        block = block + [("conv1", convs[i]), ("bn1", convs[i + 1]), ("conv2", convs[i + 2]), ("bn2", convs[i + 3])]
        layers[stage].append(block)
        block = []
        i += 4
    counts = [len(b) for b in layers]
    if counts != [2, 2, 2, 3]:
        raise ValueError(f"expected ML.NET's ResNet-18 with blocks per stage [2, 2, 2, 3], found {counts}")
    if drop_block is not None:
        layers[3] = [b for j, b in enumerate(layers[3]) if j != drop_block]
    for s, blocks in enumerate(layers):
        for j, parts in enumerate(blocks):
            names.extend((f"layer{s + 1}.{j}.{part}", node) for part, node in parts)
    return names


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    drop_block = 2
    if "--drop-block" in argv:
        value = argv[argv.index("--drop-block") + 1]
        args.remove(value)
        if value not in ("1", "2", "none"):
            sys.exit(f"--drop-block: expected 1, 2 or none (keep all three blocks: not a resnet18, for checking), got {value}")
        drop_block = None if value == "none" else int(value)
    if len(args) != 2:
        sys.exit(__doc__)
    package, out = args
    tensors, nodes = read_graph(os.path.join(package, ONNX))
    prep, _ = read_graph(os.path.join(package, PREP))
    mean_dims, mean_image = prep["MeanImage"]
    plane = mean_dims[2] * mean_dims[3]
    # The mean image is in the network's BGR order.
    mean_bgr = [sum(mean_image[c * plane:(c + 1) * plane]) / plane for c in range(3)]

    state = {}
    for prefix, (op, ins, _) in torchvision_names(nodes, drop_block):
        if op == "Conv":
            state[prefix + ".weight"] = tensors[ins[1]]
        else:
            for suffix, source in zip(("weight", "bias", "running_mean", "running_var"), ins[1:5]):
                dims, values = tensors[source]
                state[f"{prefix}.{suffix}"] = (dims, array.array("f", values))
            state[prefix + ".num_batches_tracked"] = ([], None)

    # Fold the preprocessing into conv1 and bn1 (see the docstring).
    dims, w = state["conv1.weight"]
    out_ch, in_ch, kh, kw = dims
    k = kh * kw
    folded = array.array("f", [0.0] * len(w))
    shift = []
    for o in range(out_ch):
        total = 0.0
        for c in range(in_ch):  # c: RGB channel of our input; 2 - c: the network's BGR channel
            src = (o * in_ch + (2 - c)) * k
            dst = (o * in_ch + c) * k
            scale = 255.0 * IMAGENET_STD[c]
            offset = 255.0 * IMAGENET_MEAN[c] - mean_bgr[2 - c]
            for t in range(k):
                folded[dst + t] = w[src + t] * scale
                total += w[src + t] * offset
        shift.append(total)
    state["conv1.weight"] = (dims, folded)
    rm_dims, rm = state["bn1.running_mean"]
    state["bn1.running_mean"] = (rm_dims, array.array("f", [rm[o] - shift[o] for o in range(out_ch)]))
    state["fc.weight"] = ([1000, 512], array.array("f", [0.0] * 512000))
    state["fc.bias"] = ([1000], array.array("f", [0.0] * 1000))

    write_safetensors(out, state)
    print(f"wrote {out}: {len(state)} tensors, torchvision resnet18 names; "
          f"{'kept all 3 layer4 blocks' if drop_block is None else f'left out layer4 block {drop_block} of 3'}; "
          f"mean image per channel (BGR) {', '.join(f'{m:.2f}' for m in mean_bgr)}")


def write_safetensors(path, state):
    header, blobs, offset = {}, [], 0
    for name, (dims, values) in state.items():
        if values is None:  # num_batches_tracked: an int64 scalar, as torchvision writes it
            blob, dtype = struct.pack("<q", 0), "I64"
        else:
            if sys.byteorder != "little":
                values = array.array("f", values)
                values.byteswap()
            blob, dtype = values.tobytes(), "F32"
        header[name] = {"dtype": dtype, "shape": dims, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv[1:])
