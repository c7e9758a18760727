#!/usr/bin/env python3
"""Writes this folder's subset of Fashion-MNIST: the first 2000 training and first 500 test images with
their labels, as gzip-compressed IDX files like the originals. Source: the Debian package
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)."""
import gzip, os, struct, sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
OUT = os.path.dirname(os.path.abspath(__file__))

def subset(name, count):
    with gzip.open(os.path.join(SRC, name + ".gz"), "rb") as f:
        data = f.read()
    ndims = data[3]
    dims = list(struct.unpack(">" + "I" * ndims, data[4:4 + 4 * ndims]))
    per_item = 1
    for d in dims[1:]:
        per_item *= d
    body = data[4 + 4 * ndims: 4 + 4 * ndims + count * per_item]
    header = data[:4] + struct.pack(">" + "I" * ndims, count, *dims[1:])
    # mtime=0 so the files are the same bytes every time they are made.
    with open(os.path.join(OUT, name + ".gz"), "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + body)

for split, count in (("train", 2000), ("t10k", 500)):
    subset(split + "-images-idx3-ubyte", count)
    subset(split + "-labels-idx1-ubyte", count)
