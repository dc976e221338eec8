"""The trained U-Net as a LiteRT (TensorFlow Lite) model, for fast CPU inference.

The same float32 arithmetic as the Keras model, about twice as fast on the 2-core CPUs measured
(`bench/bench.py`): the converter folds each BatchNorm into the convolution before it and
XNNPACK runs the graph with fused, cache-blocked kernels. Probabilities agree with Keras' to
about 1e-5. The flatbuffer holds two entry points sharing one copy of the weights, for batches
of `BATCH` images and of one image: XNNPACK needs fixed shapes (with a free batch dimension the
transposed convolutions fall back to slow reference kernels), so full batches go through the
first and the few images left over one at a time through the second.

    nucseg predict --model models/unet.tflite images/   # the export stage writes it
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .io import NucsegError

BATCH = 16
# A remainder of up to this many images goes one at a time; more fill a zero-padded batch
# (on the CPUs measured, one image alone costs about a sixth of a batch of BATCH).
ALONE_AT_MOST = 4
SIGNATURES = {BATCH: f"batch{BATCH}", 1: "batch1"}


def convert(model):
    """The Keras U-Net `model` as a LiteRT flatbuffer (bytes) that outputs probabilities."""
    import keras
    import tensorflow as tf

    shape = tuple(model.input_shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    for batch, name in SIGNATURES.items():
        archive.add_endpoint(name, lambda x: tf.sigmoid(model(x, training=False)),
                             input_signature=[tf.TensorSpec([batch, *shape], tf.float32, name="image")])
    with tempfile.TemporaryDirectory(prefix="nucseg-export-") as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(SIGNATURES.values()))
        return converter.convert()


def threads():
    """CPU threads for the interpreter: TF_NUM_INTRAOP_THREADS if set (as for TensorFlow, see
    the README on parallel sweeps), else every CPU this process may use."""
    value = os.environ.get("TF_NUM_INTRAOP_THREADS")
    return int(value) if value else len(os.sched_getaffinity(0))


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # e.g. where ai-edge-litert has no wheel: TensorFlow's own (deprecated) copy
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class LiteModel:
    """A converted U-Net, called like `nucseg.evaluate.forward`'s functions: images
    (N, H, W, 1) float32 in [0, 1] -> probabilities (N, H, W, 1) float32."""

    def __init__(self, content, name="<bytes>", num_threads=None):
        self.name = str(name)
        try:
            self._interpreter = _interpreter_class()(model_content=bytes(content),
                                                     num_threads=num_threads or threads())
            self._runners = {batch: self._interpreter.get_signature_runner(key)
                             for batch, key in SIGNATURES.items()}
        except (ValueError, RuntimeError) as exc:
            raise NucsegError(f"{self.name}: not a nucseg LiteRT model ({str(exc).splitlines()[0]}); "
                              "write one with 'dvc repro export' or pass the .keras model") from None
        details = self._runners[1].get_input_details()["image"]
        self.input_shape = (None, *[int(d) for d in details["shape"][1:]])

    @classmethod
    def load(cls, path, num_threads=None):
        path = Path(path)
        return cls(path.read_bytes(), name=path, num_threads=num_threads)

    def _run(self, batch):
        return next(iter(self._runners[len(batch)](image=batch).values()))

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"{self.name}: expects images shaped {self.input_shape[1:]}, got {images.shape[1:]}")
        n, full = len(images), len(images) - len(images) % BATCH
        out = [self._run(images[i:i + BATCH]) for i in range(0, full, BATCH)]
        rest = images[full:]
        if len(rest) > ALONE_AT_MOST:
            padded = np.zeros((BATCH, *images.shape[1:]), np.float32)
            padded[:len(rest)] = rest
            out.append(self._run(padded)[:len(rest)])
        else:
            out.extend(self._run(image[None]) for image in rest)
        return np.concatenate(out) if out else np.zeros((0, *images.shape[1:]), np.float32)
