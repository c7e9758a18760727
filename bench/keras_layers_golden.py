"""Keras' own numbers for the layers beyond the tutorial's: a twin whose tower uses a strided conv, batch
normalisation on a map and on flat features, a standalone ReLU, max-pooling, flatten, dense layers with
and without ReLU, and unit-length embeddings, run for two Adam steps in training mode on a fixed batch.
Writes assets/golden/keras_layers_two_steps.safetensors, which tests/keras_golden.rs holds the CPU
reference and the GPU to (see assets/golden/README.md).

    bench/.venv/bin/python bench/keras_layers_golden.py [--out FILE]

Tensor names follow gpu-siamese's checkpoints: `layerN.<name>` (N the 0-based index in the spec), with
Keras' names for a layer's tensors (kernel, bias, gamma, beta, moving_mean, moving_variance).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

import towers

SPEC = "conv(6,3,same,linear,stride=2),bn,relu,conv(8,3),maxpool,flatten,dense(16,relu),bn,dense(8),l2norm"
SHAPE = (13, 11, 3)
PAIRS = 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "assets", "golden", "keras_layers_two_steps.safetensors"))
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    from keras import layers, ops
    from safetensors.numpy import save_file

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Pixels as the program reads them: bytes / 255.
    a = (rng.integers(0, 256, size=(PAIRS, *SHAPE)) / 255.0).astype("float32")
    b = (rng.integers(0, 256, size=(PAIRS, *SHAPE)) / 255.0).astype("float32")
    label = (np.arange(PAIRS) % 3 == 0).astype("float32")

    tower = towers.keras_tower(SPEC, SHAPE)
    a_in, b_in = layers.Input(SHAPE), layers.Input(SHAPE)
    # The tower is called on the first images, then on the second: each branch's own batch statistics,
    # and the moving averages moved by the first branch, then by the second.
    emb_a, emb_b = tower(a_in), tower(b_in)
    dist = ops.sqrt(ops.maximum(ops.sum(ops.square(emb_a - emb_b), axis=1), keras.backend.epsilon()))
    twin = keras.Model([a_in, b_in], [emb_a, emb_b, dist])
    optimizer = keras.optimizers.Adam()

    # The spec's layers are the tower's layers after its input, one for one.
    params, state = {}, {}
    for i, layer in enumerate(l for l in tower.layers if not isinstance(l, keras.layers.InputLayer)):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            params[f"layer{i}.kernel"], params[f"layer{i}.bias"] = layer.kernel, layer.bias
        elif isinstance(layer, keras.layers.BatchNormalization):
            params[f"layer{i}.gamma"], params[f"layer{i}.beta"] = layer.gamma, layer.beta
            state[f"layer{i}.moving_mean"], state[f"layer{i}.moving_variance"] = layer.moving_mean, layer.moving_variance
    names = list(params)

    out = {"input_a": a, "input_b": b, "label": label}
    snapshot = lambda prefix, variables: out.update({f"{prefix}.{n}": np.array(v.numpy(), "float32") for n, v in variables.items()})
    snapshot("w0", params)
    snapshot("state0", state)
    for step in range(2):
        with tf.GradientTape() as tape:
            ea, eb, d = twin([a, b], training=True)
            y = tf.constant(label)
            loss = tf.reduce_mean(y * tf.square(d) + (1 - y) * tf.square(tf.maximum(1.0 - d, 0.0)))
        grads = tape.gradient(loss, [params[n] for n in names])
        out[f"fwd{step}.emb"] = np.concatenate([ea.numpy(), eb.numpy()]).astype("float32")
        out[f"fwd{step}.dist"] = d.numpy().astype("float32")
        out[f"fwd{step}.loss"] = np.array([loss.numpy()], "float32")
        out.update({f"fwd{step}.grad.{n}": g.numpy().astype("float32") for n, g in zip(names, grads)})
        optimizer.apply_gradients(zip(grads, [params[n] for n in names]))
        snapshot(f"w{step + 1}", params)
        snapshot(f"state{step + 1}", state)
        print(f"step {step}: loss {loss.numpy():.8f}")

    metadata = {"spec": SPEC, "shape": "x".join(map(str, SHAPE)), "keras": keras.__version__, "tensorflow": tf.__version__}
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, args.out, metadata=metadata)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
