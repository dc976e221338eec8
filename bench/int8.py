"""int8 LiteRT against the float32 LiteRT the export stage writes: speed, size and test Dice.

    python bench/int8.py        # about 5 minutes on a 2-core CPU; needs dvc repro's outputs

Converts models/unet.keras with `nucseg.lite.convert` twice, as the export stage does with
`export.precision` float32 and int8: the latter is full integer quantisation (weights and
activations int8, float32 in and out) calibrated on 512 of the training images' windows (the
model's inputs with `base.tile`), 64 batches per entry point (512, 256 and 64 windows for
batches of 8, 4 and 1, drawn evenly from the 512).
Predicts the test split at native resolution as the predict stage does (windows, TTA per
params.yaml) and scores each image at threshold 0.5 against the native masks; times 64 test
images at 128 px (batches of 8), the two models alternating in 5 rounds. Prints JSON and
writes bench/int8.json. Not a test: nothing here asserts.

    pip install -e ".[openvino]" && python bench/int8.py --openvino

adds OpenVINO, Intel's CPU runtime, as a third and fourth contender in the same rounds: the
Keras model converted by OpenVINO (batch fixed at 8), and that model quantised to int8 by NNCF
(its post-training quantisation) on the same calibration windows.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from nucseg.io import save_json

ROOT = Path(__file__).resolve().parents[1]


def openvino_models(model, calibration, threads):
    """OpenVINO float32 and NNCF int8 models from the Keras `model` (sigmoid included).

    Converted from the Keras graph: OpenVINO's TFLite frontend reads nucseg's LiteRT file
    without an error but wrongly (probabilities off by up to 1 on each of 8 images checked).
    """
    import nncf
    import openvino as ov
    import tensorflow as tf

    from nucseg.lite import BATCH, LiteModel

    class OpenVINOModel(LiteModel):
        """An OpenVINO model compiled for batches of `BATCH`, called like the LiteRT one."""

        def __init__(self, compiled, name):
            self.name, self._request = name, compiled.create_infer_request()
            self.input_shape = (None, *compiled.inputs[0].get_shape()[1:])

        def _run(self, batch):
            padded = np.zeros((BATCH, *batch.shape[1:]), np.float32)
            padded[:len(batch)] = batch
            return self._request.infer({0: padded})[0][:len(batch)].copy()

    @tf.function(input_signature=[tf.TensorSpec([BATCH, *model.input_shape[1:]], tf.float32)])
    def probabilities(x):
        return tf.sigmoid(model(x, training=False))

    start = time.perf_counter()
    converted = ov.convert_model(probabilities)
    convert_s, start = time.perf_counter() - start, time.perf_counter()
    batches = [calibration[i:i + BATCH] for i in range(0, len(calibration), BATCH)]
    quantised = nncf.quantize(converted, nncf.Dataset(batches), subset_size=len(batches))
    quantise_s = time.perf_counter() - start
    core, config = ov.Core(), {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    return {"openvino_float32": (OpenVINOModel(core.compile_model(converted, "CPU", config), "openvino_float32"),
                                 {"convert_s": convert_s}),
            "openvino_int8": (OpenVINOModel(core.compile_model(quantised, "CPU", config), "openvino_int8"),
                              {"convert_s": convert_s, "quantise_s": quantise_s})}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openvino", action="store_true", help="also time OpenVINO float32 and NNCF int8")
    args = parser.parse_args()

    from nucseg.data import native_gray, read_meta, select
    from nucseg.evaluate import load_model
    from nucseg.io import open_raw, read_ids
    from nucseg.lite import CALIBRATION, LiteModel, convert, threads
    from nucseg.metrics import confusion, scores
    from nucseg.params import load_params
    from nucseg.predict import iter_native_probs
    from nucseg.windows import split_inputs

    p = load_params("ingest", "predict")
    # calibrated exactly as the export stage does, before TensorFlow starts
    calibration = split_inputs(ROOT / "data/split/train.txt", p["tile"], p["img_size"], p["normalization"],
                               raw=ROOT / "data/raw", labels=ROOT / "data/masks/labels.npz",
                               images=ROOT / "data/ingest/images.npy", meta=ROOT / "data/ingest/meta.csv",
                               limit=CALIBRATION)
    model = load_model(ROOT / "models/unet.keras")
    ids = read_meta(ROOT / "data/ingest/meta.csv")["id"].tolist()
    images = np.load(ROOT / "data/ingest/images.npy")
    test_ids = read_ids(ROOT / "data/split/test.txt")

    results, models = {}, {}
    for name, calib in (("float32", None), ("int8", calibration)):
        start = time.perf_counter()
        content = convert(model, calib)
        results[name] = {"convert_s": time.perf_counter() - start, "size_mb": len(content) / 1e6}
        models[name] = LiteModel(content, name=name)
    if args.openvino:
        for name, (ov_model, result) in openvino_models(model, calibration, threads()).items():
            models[name], results[name] = ov_model, result

    source = open_raw(ROOT / "data/raw")
    labels = np.load(ROOT / "data/masks/labels.npz")
    probs = {}
    for name, lite in models.items():
        grays = (native_gray(source.read_image(i), p["normalization"]) for i in test_ids)
        probs[name] = dict(zip(test_ids, iter_native_probs(lite, grays, tile=p["tile"], overlap=p["overlap"],
                                                           batch_size=p["batch_size"], tta=p["tta"])))
        dice = [float(scores(*confusion(labels[i] > 0, probs[name][i] >= 0.5))["dice"]) for i in test_ids]
        results[name]["test_native_dice_mean"] = statistics.mean(dice)

    batch = select(images, ids, test_ids)[:64, ..., None].astype(np.float32)
    rates = {name: [] for name in models}
    for _ in range(5):
        for name, lite in models.items():
            start = time.perf_counter()
            lite(batch)
            rates[name].append(len(batch) / (time.perf_counter() - start))
    for name in models:
        results[name].update(img_s=statistics.median(rates[name]), img_s_runs=rates[name])
    for name in [name for name in models if name != "float32"]:   # each against the float32 LiteRT
        masks_agree = [float(scores(*confusion(probs["float32"][i] >= 0.5, probs[name][i] >= 0.5))["dice"])
                       for i in test_ids]
        results[f"{name}_vs_float32"] = {
            "max_probability_difference": max(float(np.abs(probs[name][i] - probs["float32"][i]).max())
                                              for i in test_ids),
            "mask_dice_mean": statistics.mean(masks_agree), "mask_dice_min": min(masks_agree),
            "speedup": statistics.median(a / b for a, b in zip(rates[name], rates["float32"]))}
    save_json(ROOT / "bench/int8.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
