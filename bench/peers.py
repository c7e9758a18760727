"""The tutorial's training step in TensorFlow/Keras or PyTorch, timed the way `gpu-siamese bench` times
its own: the same tower (Conv2D(128, 2x2, 'same', relu) -> MaxPool 2x2 -> Dropout 0.4 -> global average
pool -> Dense(48)), both images of each pair through it, Euclidean distance, contrastive loss with margin
1, Adam with Keras' defaults, batch 64 pairs of random 28x28 images. Prints one JSON line.

    python bench/peers.py tensorflow|pytorch [--steps N] [--repeats R] [--warmup W] [--threads T] [--device cpu|cuda]

--device cuda runs PyTorch on the GPU (TensorFlow's CPU build has none).
"""

import argparse
import json
import os
import statistics
import time

import numpy as np


def batches(count, batch, seed=0):
    """Random pairs of 28x28 images in [0, 1) and 0/1 labels, fixed by the seed."""
    rng = np.random.default_rng(seed)
    a = rng.random((count, batch, 28, 28, 1), dtype=np.float32)
    b = rng.random((count, batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 2, (count, batch)).astype(np.float32)
    return a, b, y


def time_steps(step, sync, steps, repeats, warmup):
    for i in range(warmup):
        step(i)
    sync()
    per_step = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        sync()
        per_step.append(1e3 * (time.perf_counter() - start) / steps)
    return per_step


def tutorial_model():
    """The tutorial's twin network in Keras, as its code runs, compiled with contrastive loss (margin 1)
    and Adam with Keras' defaults: one input per image of a pair, the pair's distance out."""
    import keras
    from keras import layers, ops

    inp = layers.Input((28, 28, 1))
    x = layers.Conv2D(128, (2, 2), activation="relu", padding="same")(inp)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Dropout(0.4)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(48)(x)
    tower = keras.Model(inp, x)
    a_in, b_in = layers.Input((28, 28, 1)), layers.Input((28, 28, 1))
    dist = layers.Lambda(
        lambda v: ops.sqrt(ops.maximum(ops.sum(ops.square(v[0] - v[1]), axis=1, keepdims=True), keras.backend.epsilon()))
    )([tower(a_in), tower(b_in)])
    model = keras.Model([a_in, b_in], dist)

    def contrastive_loss(y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        return ops.mean(y_true * ops.square(y_pred) + (1 - y_true) * ops.square(ops.maximum(1.0 - y_pred, 0)))

    model.compile(loss=contrastive_loss, optimizer=keras.optimizers.Adam())
    return model


def tensorflow_step(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)

    model = tutorial_model()
    a, b, y = batches(16, args.batch)
    step = lambda i: model.train_on_batch([a[i % 16], b[i % 16]], y[i % 16])
    return step, f"TensorFlow {tf.__version__} CPU, Keras {keras.__version__}", lambda: None


def pytorch_step(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 128, 2)
            self.drop = nn.Dropout(0.4)
            self.dense = nn.Linear(128, 48)

        def forward(self, x):
            # Keras' 'same' for an even kernel pads after: one column right, one row below.
            x = F.relu(self.conv(F.pad(x, (0, 1, 0, 1))))
            x = self.drop(F.max_pool2d(x, 2))
            return self.dense(x.mean(dim=(2, 3)))

    device = torch.device(args.device)
    tower = Tower().to(device)
    optimizer = torch.optim.Adam(tower.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    a, b, y = batches(16, args.batch)
    # NCHW, as PyTorch's convolution wants.
    a = torch.from_numpy(a).permute(0, 1, 4, 2, 3).contiguous().to(device)
    b = torch.from_numpy(b).permute(0, 1, 4, 2, 3).contiguous().to(device)
    y = torch.from_numpy(y).to(device)
    # GPU work is queued: wait for it before a timer reads the clock.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(i):
        k = i % 16
        ea, eb = tower(a[k]), tower(b[k])
        d = torch.sqrt(torch.clamp(((ea - eb) ** 2).sum(dim=1), min=1e-7))
        loss = (y[k] * d**2 + (1 - y[k]) * torch.clamp(1.0 - d, min=0) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    name = f"PyTorch {torch.__version__} " + (torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU")
    return step, name, sync


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("framework", choices=["tensorflow", "pytorch"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="PyTorch's device: cpu or cuda")
    args = parser.parse_args()
    step, what, sync = (tensorflow_step if args.framework == "tensorflow" else pytorch_step)(args)
    per_step = time_steps(step, sync, args.steps, args.repeats, args.warmup)
    print(json.dumps({
        "framework": what,
        "batch_pairs": args.batch,
        "steps": args.steps,
        "ms_per_step": {"median": statistics.median(per_step), "min": min(per_step), "max": max(per_step)},
    }))


if __name__ == "__main__":
    main()
