"""gpu-siamese's tower specs (--arch), read into Keras and PyTorch models that compute the same thing:
one definition for the benchmark beside TensorFlow and PyTorch (peers.py), the Keras golden for the
layers (keras_layers_golden.py) and the Keras curves (keras_recipe.py).

    conv(FILTERS, K[xK][, same|valid][, relu|linear][, stride=S])   maxpool[(SIZE[, STRIDE])]
    dropout(RATE)   gap   globalmaxpool   flatten   dense(UNITS[, relu|linear])   bn   relu   l2norm

Named towers (tutorial, tutorial-intended, small, colour) are read from the gpu-siamese binary's own
list when one is given, so the names mean the same thing on both sides.
"""

import re
import subprocess


def parse(spec):
    """The spec as a list of (name, positional args, keyword args), split at top-level commas."""
    layers, depth, start = [], 0, 0
    pieces = []
    for i, ch in enumerate(spec + ","):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(spec[start:i].strip())
            start = i + 1
    for piece in pieces:
        m = re.fullmatch(r"(\w+)(?:\((.*)\))?", piece)
        if not m:
            raise ValueError(f"cannot read layer {piece!r}")
        args = [a.strip() for a in (m.group(2) or "").split(",") if a.strip()]
        kwargs = dict(a.split("=", 1) for a in args if "=" in a)
        layers.append((m.group(1), [a for a in args if "=" not in a], {k.strip(): v.strip() for k, v in kwargs.items()}))
    return layers


def resolve(spec, binary=None):
    """A named tower's spec, from `gpu-siamese towers` (one name and spec a line), else the spec itself."""
    if re.fullmatch(r"[\w-]+", spec) and binary:
        out = subprocess.run([binary, "towers"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            name, _, text = line.partition(" ")
            if name == spec:
                return text.strip()
    return spec


def _conv_args(args, kwargs):
    filters = int(args[0])
    kh, _, kw = args[1].partition("x")
    kernel = (int(kh), int(kw or kh))
    padding = "valid" if "valid" in args[2:] else "same"
    activation = "linear" if "linear" in args[2:] else "relu"
    return filters, kernel, padding, activation, int(kwargs.get("stride", 1))


def _pool_args(args):
    size = int(args[0]) if args else 2
    stride = int(args[1]) if len(args) > 1 else size
    return size, stride


def keras_tower(spec, shape):
    """The tower as a Keras model from images of `shape` (h, w, c) to embeddings."""
    import keras
    from keras import layers, ops

    x = inputs = layers.Input(shape)
    for name, args, kwargs in parse(spec):
        if name == "conv":
            filters, kernel, padding, activation, stride = _conv_args(args, kwargs)
            x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, activation=activation)(x)
        elif name == "maxpool":
            size, stride = _pool_args(args)
            x = layers.MaxPooling2D(pool_size=size, strides=stride)(x)
        elif name == "dropout":
            x = layers.Dropout(float(args[0]))(x)
        elif name == "gap":
            x = layers.GlobalAveragePooling2D()(x)
        elif name == "globalmaxpool":
            x = layers.GlobalMaxPooling2D()(x)
        elif name == "flatten":
            x = layers.Flatten()(x)
        elif name == "dense":
            x = layers.Dense(int(args[0]), activation="relu" if "relu" in args[1:] else None)(x)
        elif name == "bn":
            x = layers.BatchNormalization(momentum=0.99, epsilon=1e-3)(x)
        elif name == "relu":
            x = layers.ReLU()(x)
        elif name == "l2norm":
            x = layers.UnitNormalization(axis=-1)(x)
        else:
            raise ValueError(f"unknown layer {name}")
    return keras.Model(inputs, x)


def keras_twin(spec, shape, margin=1.0):
    """The twin in Keras: two images through one tower, the tutorial's distance, contrastive loss, Adam
    with Keras' defaults."""
    import keras
    from keras import layers, ops

    tower = keras_tower(spec, shape)
    a_in, b_in = layers.Input(shape), layers.Input(shape)
    dist = layers.Lambda(
        lambda v: ops.sqrt(ops.maximum(ops.sum(ops.square(v[0] - v[1]), axis=1, keepdims=True), keras.backend.epsilon()))
    )([tower(a_in), tower(b_in)])
    model = keras.Model([a_in, b_in], dist)

    def contrastive_loss(y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        return ops.mean(y_true * ops.square(y_pred) + (1 - y_true) * ops.square(ops.maximum(margin - y_pred, 0)))

    model.compile(loss=contrastive_loss, optimizer=keras.optimizers.Adam())
    return model, tower


def _same_pad(size, kernel, stride):
    """TensorFlow's 'same' padding along one axis: (before, after), the smaller half before."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def torch_tower(spec, shape):
    """The tower as a PyTorch module on NCHW images of `shape` (h, w, c), Keras' padding and order."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    h, w, c = shape
    flat = False
    steps = []
    for name, args, kwargs in parse(spec):
        if name == "conv":
            filters, (kh, kw), padding, activation, stride = _conv_args(args, kwargs)
            if padding == "same":
                top, bottom, oh = _same_pad(h, kh, stride)
                left, right, ow = _same_pad(w, kw, stride)
            else:
                top = bottom = left = right = 0
                oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
            conv = nn.Conv2d(c, filters, (kh, kw), stride=stride)
            pad = (left, right, top, bottom)
            relu = activation == "relu"
            steps.append((conv, lambda x, conv=conv, pad=pad, relu=relu: (F.relu if relu else (lambda v: v))(conv(F.pad(x, pad)))))
            h, w, c = oh, ow, filters
        elif name == "maxpool":
            size, stride = _pool_args(args)
            steps.append((None, lambda x, s=size, t=stride: F.max_pool2d(x, s, t)))
            h, w = (h - size) // stride + 1, (w - size) // stride + 1
        elif name == "dropout":
            drop = nn.Dropout(float(args[0]))
            steps.append((drop, drop))
        elif name in ("gap", "globalmaxpool"):
            reduce = (lambda x: x.mean(dim=(2, 3))) if name == "gap" else (lambda x: x.amax(dim=(2, 3)))
            steps.append((None, reduce))
            flat, h, w = True, 1, 1
        elif name == "flatten":
            # Keras flattens NHWC: channels last.
            steps.append((None, lambda x: x.permute(0, 2, 3, 1).flatten(1)))
            flat, c, h, w = True, h * w * c, 1, 1
        elif name == "dense":
            dense = nn.Linear(c, int(args[0]))
            relu = "relu" in args[1:]
            steps.append((dense, lambda x, d=dense, r=relu: F.relu(d(x)) if r else d(x)))
            c = int(args[0])
        elif name == "bn":
            bn = (nn.BatchNorm1d if flat else nn.BatchNorm2d)(c, eps=1e-3, momentum=0.01)
            steps.append((bn, bn))
        elif name == "relu":
            steps.append((None, F.relu))
        elif name == "l2norm":
            steps.append((None, lambda x: F.normalize(x, dim=1, eps=1e-12)))
        else:
            raise ValueError(f"unknown layer {name}")

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = nn.ModuleList([m for m, _ in steps if m is not None])
            self.calls = [f for _, f in steps]

        def forward(self, x):
            for f in self.calls:
                x = f(x)
            return x

    return Tower()
