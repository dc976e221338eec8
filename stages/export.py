"""export: the trained U-Net as a LiteRT (TensorFlow Lite) model, which the predict and
robustness stages run, about twice TensorFlow's speed on a CPU (see nucseg/lite.py).
`nucseg predict --model models/unet.tflite` runs it on new images.

`export.precision: float32` keeps the model's arithmetic: refused unless its probabilities match
the Keras model's to 1e-3. `int8` quantises weights and activations, calibrated on what the model
sees of the training images (their `base.tile` windows at `img_size`): a third of the size,
about 1.3x as fast; refused unless its masks agree with the Keras model's on the validation
images' windows at Dice >= `export.min_agreement`, pooled over their pixels (masks at probability
0.5, whatever `evaluate.threshold`: a check of the conversion, not a score).
"""
import argparse
from pathlib import Path

import numpy as np

from nucseg.evaluate import forward, load_model, predict_probs
from nucseg.io import NucsegError, atomic_path, restore_fix
from nucseg.lite import BATCH, CALIBRATION, LiteModel, convert
from nucseg.metrics import confusion, scores
from nucseg.modelinfo import add_to_tflite, model_settings
from nucseg.params import load_params, run
from nucseg.windows import split_inputs


def float32_gap(lite, model):
    """Largest probability difference on random images, at every entry point."""
    rng, gap = np.random.default_rng(0), 0.0
    for n in (BATCH + 3, 1):   # a full batch, a padded one, a single image
        images = rng.random((n, *model.input_shape[1:]), dtype=np.float32)
        gap = max(gap, float(np.abs(lite(images) - forward(model)(images)).max()))
    return gap


def mask_agreement(lite, model, images):
    """Dice between the two models' masks (probability >= 0.5), pooled over `images` (N, H, W, 1)."""
    a = predict_probs(lite, images[..., 0]) >= 0.5
    b = predict_probs(model, images[..., 0]) >= 0.5
    return float(scores(*(counts.sum() for counts in confusion(a, b)))["dice"])


def export_float32(model, settings, args):
    """The float32 conversion, refused unless it computes what the Keras model computes."""
    content = add_to_tflite(convert(model), settings)
    gap = float32_gap(LiteModel(content, name=args.out), model)
    if gap > 1e-3:
        raise NucsegError(f"{args.out}: the converted model differs from {args.model} by {gap:.2g} in "
                          "probability; not written (check the tensorflow and ai-edge-litert versions)")
    return content, f"max probability difference {gap:.1e}"


def export_int8(model, settings, calibration, val, min_agreement, args):
    """The int8 conversion, refused unless its masks agree with the Keras model's on `val`."""
    content = add_to_tflite(convert(model, calibration), settings)
    agreement = mask_agreement(LiteModel(content, name=args.out), model, val)
    if agreement < min_agreement:
        raise NucsegError(f"{args.out}: the int8 model's masks agree with {args.model}'s at Dice {agreement:.3f} "
                          f"< export.min_agreement {min_agreement} on {len(val)} validation windows; "
                          "not written (use export.precision: float32, or lower export.min_agreement)")
    return content, f"masks agree at Dice {agreement:.4f} on {len(val)} validation windows"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the trained .keras model")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--images", required=True, help="ingested images (img_size), int8 with tile 0")
    parser.add_argument("--meta", required=True)
    parser.add_argument("--raw", required=True, help="the raw data, int8 with windows")
    parser.add_argument("--labels", required=True, help="native label images (.npz), int8 with windows")
    parser.add_argument("--split", required=True, help="folder with train.txt (calibration), val.txt (check)")
    args = parser.parse_args()
    p = load_params("ingest", "export")   # checked: precision, min_agreement (nucseg.params.SCHEMA)
    # the file carries how the model saw its images, for `nucseg predict` (nucseg.modelinfo)
    settings = model_settings(p["tile"], p["img_size"], p["normalization"])
    # each conversion is checked against the Keras model before it replaces anything
    trained = lambda: load_model(args.model, fix=restore_fix(args.model))
    if p["precision"] == "float32":
        content, check = export_float32(trained(), settings, args)
    else:   # windows first: their process pools fork before TensorFlow starts
        data = dict(tile=p["tile"], size=p["img_size"], normalization=p["normalization"], raw=args.raw,
                    labels=args.labels, images=args.images, meta=args.meta)
        val = split_inputs(Path(args.split) / "val.txt", **data)
        calibration = split_inputs(Path(args.split) / "train.txt", **data, limit=CALIBRATION)
        content, check = export_int8(trained(), settings, calibration, val, p["min_agreement"], args)
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(content)
    print(f"export: {args.model} -> {args.out} ({p['precision']}, {len(content) / 1e6:.1f} MB; {check})")


if __name__ == "__main__":
    run(main)
