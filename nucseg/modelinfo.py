"""How a trained model saw its images, stored inside the model file so that it travels with it.

A model is only right on images prepared as its training images were: cut into windows of the
same tile (native pixels per model input) and normalised the same way. The train stage writes
these settings into the ``.keras`` file (a ``nucseg.json`` member of its zip, which Keras
ignores) and the export stage into the ``.tflite`` file (a flatbuffer metadata entry
``nucseg``, which LiteRT ignores), so that `nucseg predict` uses them for a model copied
anywhere on its own. Models written before carry none: `settings_of` then reads the
``config.json`` the train stage writes beside the model.

    >>> settings_of("models/unet.tflite")
    ({'tile': 256, 'img_size': 128, 'normalization': 'percentile'}, 'models/unet.tflite')
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from .params import NORMALIZATIONS

KERAS_MEMBER = "nucseg.json"
TFLITE_METADATA = b"nucseg"


def model_settings(tile, img_size, normalization):
    """The settings stored in a model: `tile` (0: whole images resized), `img_size` (the model's
    input, pixels) and `normalization` (`nucseg.data.native_gray`)."""
    return {"tile": int(tile), "img_size": int(img_size), "normalization": str(normalization)}


def _valid(settings):
    """`settings` if they are a model's settings, else None (from a file written by hand, say)."""
    try:
        ok = (int(settings["tile"]) >= 0 and int(settings["img_size"]) > 0
              and settings["normalization"] in NORMALIZATIONS)
        return model_settings(settings["tile"], settings["img_size"], settings["normalization"]) if ok else None
    except (KeyError, TypeError, ValueError):
        return None


def add_to_keras(path, settings):
    """Write `settings` into the ``.keras`` file at `path` (in place; replaces none: call it once,
    on a freshly saved model)."""
    if not Path(path).is_file():   # mode "a" would make a zip of nothing else
        raise FileNotFoundError(2, "no model file to add settings to", str(path))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(KERAS_MEMBER, json.dumps(model_settings(**settings)))


def _schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:   # where ai-edge-litert has no wheel: TensorFlow's copy of the schema
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def add_to_tflite(content, settings):
    """The ``.tflite`` flatbuffer `content` (bytes) with `settings` as its metadata entry
    ``nucseg`` (the model's tensors, operators and signatures unchanged)."""
    import flatbuffers
    import numpy as np

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name == TFLITE_METADATA), None)
    if entry is None:   # else its buffer is rewritten
        entry, buffer = schema.MetadataT(), schema.BufferT()
        model.buffers.append(buffer)
        entry.name, entry.buffer = TFLITE_METADATA, len(model.buffers) - 1
        model.metadata.append(entry)
    model.buffers[entry.buffer].data = np.frombuffer(json.dumps(model_settings(**settings)).encode(), np.uint8)
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _from_tflite(path):
    schema = _schema()
    model = schema.Model.GetRootAs(bytearray(Path(path).read_bytes()), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == TFLITE_METADATA:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return None


def _from_keras(path):
    with zipfile.ZipFile(path) as archive:
        if KERAS_MEMBER not in archive.namelist():
            return None
        return json.loads(archive.read(KERAS_MEMBER))


def embedded_settings(path):
    """The settings stored inside the model file at `path`, or None (none stored, or not a model
    file that could be read: loading the model reports that)."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".tflite":
            return _valid(_from_tflite(path))
        if suffix == ".keras":
            return _valid(_from_keras(path))
    except Exception:  # a damaged or foreign file: flatbuffers and zipfile raise anything
        return None
    return None


def config_settings(path):
    """The settings in the ``config.json`` the train stage writes beside the model at `path`,
    or None."""
    try:
        config = json.loads(Path(path).with_name("config.json").read_text())
        return _valid({"tile": config["tile"], "img_size": config["img_size"],
                       "normalization": config["params"]["normalization"]})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def settings_of(path):
    """`(settings, where)`: the model's settings from inside the file, else from ``config.json``
    beside it (`where` names the file they came from), else `(None, None)`."""
    settings = embedded_settings(path)
    if settings is not None:
        return settings, str(path)
    settings = config_settings(path)
    if settings is not None:
        return settings, str(Path(path).with_name("config.json"))
    return None, None
