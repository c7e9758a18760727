"""One training step of a tower in TensorFlow/Keras or PyTorch, timed the way `gpu-siamese bench` times
its own: the same tower (any --arch, read by towers.py; Keras' padding in both), both images of each
pair through it, Euclidean distance, contrastive loss with margin 1, Adam with Keras' defaults, a batch
of random images. Prints one JSON line.

    python bench/peers.py tensorflow|pytorch [--arch SPEC] [--image-size HxW] [--channels C]
        [--batch N] [--steps N] [--repeats R] [--warmup W] [--threads T] [--device cpu|cuda]

--device cuda runs PyTorch on the GPU (TensorFlow's CPU build has none).
"""

import argparse
import json
import os
import statistics
import time

import numpy as np

import towers

TUTORIAL = "conv(128,2,same,relu),maxpool,dropout(0.4),gap,dense(48)"


def batches(count, batch, shape, seed=0):
    """Random pairs of images in [0, 1) and 0/1 labels, fixed by the seed."""
    rng = np.random.default_rng(seed)
    a = rng.random((count, batch, *shape), dtype=np.float32)
    b = rng.random((count, batch, *shape), dtype=np.float32)
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
    """The tutorial's twin network in Keras, as its code runs (for tutorial_keras.py)."""
    return towers.keras_twin(TUTORIAL, (28, 28, 1))[0]


def tensorflow_step(args, shape):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)

    model, _ = towers.keras_twin(args.arch, shape)
    a, b, y = batches(4, args.batch, shape)
    step = lambda i: model.train_on_batch([a[i % 4], b[i % 4]], y[i % 4])
    return step, f"TensorFlow {tf.__version__} CPU, Keras {keras.__version__}", lambda: None


def pytorch_step(args, shape):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    tower = towers.torch_tower(args.arch, shape).to(device)
    optimizer = torch.optim.Adam(tower.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    a, b, y = batches(4, args.batch, shape)
    # NCHW, as PyTorch's convolution wants.
    a = torch.from_numpy(a).permute(0, 1, 4, 2, 3).contiguous().to(device)
    b = torch.from_numpy(b).permute(0, 1, 4, 2, 3).contiguous().to(device)
    y = torch.from_numpy(y).to(device)
    # GPU work is queued: wait for it before a timer reads the clock.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(i):
        k = i % 4
        # Both images of every pair as one batch, as the twin runs them.
        emb = tower(torch.cat([a[k], b[k]]))
        ea, eb = emb[: args.batch], emb[args.batch :]
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
    parser.add_argument("--arch", default=TUTORIAL)
    parser.add_argument("--image-size", default="28x28", help="HxW, or N for NxN")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64, help="pairs per step")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="PyTorch's device: cpu or cuda")
    args = parser.parse_args()
    h, _, w = args.image_size.partition("x")
    shape = (int(h), int(w or h), args.channels)
    step, what, sync = (tensorflow_step if args.framework == "tensorflow" else pytorch_step)(args, shape)
    per_step = time_steps(step, sync, args.steps, args.repeats, args.warmup)
    print(json.dumps({
        "framework": what,
        "arch": args.arch,
        "batch_pairs": args.batch,
        "steps": args.steps,
        "ms_per_step": {"median": statistics.median(per_step), "min": min(per_step), "max": max(per_step)},
    }))


if __name__ == "__main__":
    main()
