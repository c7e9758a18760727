"""Runs an ONNX model with onnxruntime for tests/export.rs: the model, then NAME=FILE.npy inputs, then
the .npy file its first output goes to.

    python tests/onnx_run.py model.onnx images=in.npy out.npy
"""

import sys

import numpy as np
import onnxruntime

model, *inputs, out = sys.argv[1:]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
feeds = {name: np.load(path) for name, path in (i.split("=", 1) for i in inputs)}
np.save(out, session.run(None, feeds)[0].astype(np.float32))
