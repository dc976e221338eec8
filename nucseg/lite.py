"""The trained U-Net as a LiteRT (TensorFlow Lite) model, for fast CPU inference.

By default the same float32 arithmetic as the Keras model, about twice as fast on the 2-core
CPUs measured (`bench/bench.py`): the converter folds each BatchNorm into the convolution before
it and XNNPACK runs the graph with fused, cache-blocked kernels. Probabilities agree with Keras'
to about 1e-5. (`convert` with calibration images quantises to int8 instead.) XNNPACK needs
fixed shapes (with a free batch dimension the transposed convolutions fall back to slow
reference kernels), so the flatbuffer holds one entry point per batch size in
`SIZES`, sharing one copy of the weights: full batches of `BATCH`, and the images left over
padded to the smallest size that holds them. (Measured on a Zen 3: 30 ms per image in batches
of one or two, 13 in batches of 4, 11 in batches of 8 or 16.)

    nucseg predict --model models/unet.tflite images/   # the export stage writes it
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .io import NucsegError

SIZES = (8, 4, 1)       # batch sizes of the entry points, largest first
BATCH = SIZES[0]
SIGNATURES = {size: f"batch{size}" for size in SIZES}
CALIBRATION_BATCHES = 64   # int8: batches per entry point, at most
CALIBRATION = CALIBRATION_BATCHES * BATCH   # 512 images (convert draws the smaller entry points' from them)


def convert(model, calibration=None):
    """The Keras U-Net `model` as a LiteRT flatbuffer (bytes) that outputs probabilities.

    With `calibration` (images (N, H, W, 1) float32), weights and activations are quantised to
    int8 (float32 in and out), each entry point calibrated on up to 64 batches of its own size
    drawn evenly from `calibration` (at least one: fewer images than a batch are repeated; an
    entry point left uncalibrated would stay partly float). Speed, size and test Dice against
    float32: `python bench/int8.py`, `bench/int8.json`; the export stage's `export.precision`."""
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
        if calibration is not None:
            calibration = np.asarray(calibration, dtype=np.float32)
            if not len(calibration):
                raise ValueError("int8 conversion needs calibration images; got none")

            def representative():
                for size, key in SIGNATURES.items():
                    # evenly spaced over the images; fewer than a batch are repeated, so that
                    # every entry point is calibrated
                    n = max(min(len(calibration), CALIBRATION_BATCHES * size), size)
                    order = np.arange(n) * len(calibration) // n
                    for i in range(0, n - size + 1, size):
                        yield key, {"image": calibration[order[i:i + size]]}

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
        return converter.convert()


def threads():
    """CPU threads for the interpreter: TF_NUM_INTRAOP_THREADS if set (as for TensorFlow, see
    the README on parallel sweeps), else every CPU this process may use."""
    value = os.environ.get("TF_NUM_INTRAOP_THREADS")
    if value:
        return int(value)
    affinity = getattr(os, "sched_getaffinity", None)   # Linux; elsewhere every CPU
    return len(affinity(0)) if affinity else os.cpu_count()


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
        full = len(images) - len(images) % BATCH
        out = [self._run(images[i:i + BATCH]) for i in range(0, full, BATCH)]
        rest = images[full:]
        if len(rest):
            size = min(size for size in SIZES if size >= len(rest))
            padded = np.zeros((size, *images.shape[1:]), np.float32)
            padded[:len(rest)] = rest
            out.append(self._run(padded)[:len(rest)])
        return np.concatenate(out) if out else np.zeros((0, *images.shape[1:]), np.float32)
