"""The tutorial's own training, in Keras on TensorFlow's CPU build, on the real Fashion-MNIST (the Debian
package dataset-fashion-mnist): its create_pairs, its tower as the code runs, contrastive loss, Adam,
batch 64. Prints Keras' per-epoch lines, then one JSON line with the loss and val_loss of every epoch,
to set gpu-siamese's curve (metrics.csv) beside TensorFlow's for the same number of epochs and any
seed.

    bench/.venv/bin/python bench/tutorial_keras.py [--seed S] [--epochs N] [--threads T] [--data DIR]
"""

import argparse
import gzip
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def read_idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def create_pairs(images, labels):
    """The tutorial's: for every image, a random image of its class (label 1) and one of another (0)."""
    pairs, pair_labels = [], []
    by_class = [np.where(labels == i)[0] for i in range(10)]
    for i in range(len(images)):
        pairs.append([images[i], images[np.random.choice(by_class[labels[i]])]])
        pair_labels.append([1])
        pairs.append([images[i], images[np.random.choice(np.where(labels != labels[i])[0])]])
        pair_labels.append([0])
    return np.array(pairs), np.array(pair_labels).astype("float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=70)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()

    import tensorflow as tf
    import keras

    from peers import tutorial_model  # noqa: E402

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    np.random.seed(args.seed)

    def images(name):
        return read_idx(f"{args.data}/{name}", 16).reshape(-1, 28, 28, 1).astype("float32") / 255.0

    x_train, y_train = images("train-images-idx3-ubyte.gz"), read_idx(f"{args.data}/train-labels-idx1-ubyte.gz", 8)
    x_test, y_test = images("t10k-images-idx3-ubyte.gz"), read_idx(f"{args.data}/t10k-labels-idx1-ubyte.gz", 8)
    train_pairs, train_labels = create_pairs(x_train, y_train)
    test_pairs, test_labels = create_pairs(x_test, y_test)

    model = tutorial_model()
    history = model.fit(
        [train_pairs[:, 0], train_pairs[:, 1]],
        train_labels,
        validation_data=([test_pairs[:, 0], test_pairs[:, 1]], test_labels),
        batch_size=64,
        epochs=args.epochs,
        verbose=2,
    )
    print(json.dumps({"seed": args.seed, "loss": history.history["loss"], "val_loss": history.history["val_loss"]}))


if __name__ == "__main__":
    main()
