"""export: the trained U-Net as a LiteRT (TensorFlow Lite) model, which the predict and
robustness stages run, about twice TensorFlow's speed on a CPU (see nucseg/lite.py).
`nucseg predict --model models/unet.tflite` runs it on new images.

`export.precision: float32` keeps the model's arithmetic: refused unless its probabilities match
the Keras model's to 1e-3. `int8` quantises weights and activations (calibrated on training
images; a third of the size, about 1.3x as fast): refused unless its masks agree with the Keras
model's on the validation images at Dice >= `export.min_agreement`.
"""
import argparse

import numpy as np
import pandas as pd

from nucseg.data import select
from nucseg.evaluate import forward, load_model
from nucseg.io import NucsegError, atomic_path, read_ids
from nucseg.lite import BATCH, LiteModel, convert
from nucseg.metrics import confusion, scores
from nucseg.params import load_params, run

PRECISIONS = ("float32", "int8")


def float32_gap(lite, model):
    """Largest probability difference on random images, at every entry point."""
    rng, gap = np.random.default_rng(0), 0.0
    for n in (BATCH + 3, 1):   # a full batch, a padded one, a single image
        images = rng.random((n, *model.input_shape[1:]), dtype=np.float32)
        gap = max(gap, float(np.abs(lite(images) - forward(model)(images)).max()))
    return gap


def mask_agreement(lite, model, images):
    """Dice between the two models' masks (probability >= 0.5), pooled over `images`."""
    a, b = lite(images)[..., 0] >= 0.5, forward(model)(images)[..., 0] >= 0.5
    return float(scores(*(counts.sum() for counts in confusion(a, b)))["dice"])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the trained .keras model")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--images", required=True, help="ingested images (img_size), for int8")
    parser.add_argument("--meta", required=True)
    parser.add_argument("--calibrate-ids", required=True, help="int8: calibrate on these images (training)")
    parser.add_argument("--check-ids", required=True, help="int8: compare the masks on these (validation)")
    args = parser.parse_args()
    p = load_params("export", with_base=False)
    precision = p.get("precision", "float32")
    if precision not in PRECISIONS:
        raise NucsegError(f"params.yaml: export.precision is {precision!r}; use one of {', '.join(PRECISIONS)}")
    model = load_model(args.model)
    if precision == "float32":
        content = convert(model)
    else:
        images, ids = np.load(args.images, mmap_mode="r"), pd.read_csv(args.meta)["id"].tolist()
        content = convert(model, select(images, ids, read_ids(args.calibrate_ids))[..., None])
    # the converted model must compute what the Keras model computes, before it replaces anything
    lite = LiteModel(content, name=args.out)
    if precision == "float32":
        gap = float32_gap(lite, model)
        if gap > 1e-3:
            raise NucsegError(f"{args.out}: the converted model differs from {args.model} by {gap:.2g} in "
                              "probability; not written (check the tensorflow and ai-edge-litert versions)")
        check = f"max probability difference {gap:.1e}"
    else:
        check_ids = read_ids(args.check_ids)
        agreement = mask_agreement(lite, model, select(images, ids, check_ids)[..., None].astype(np.float32))
        if agreement < p["min_agreement"]:
            raise NucsegError(f"{args.out}: the int8 model's masks agree with {args.model}'s at Dice {agreement:.3f} "
                              f"< export.min_agreement {p['min_agreement']} on {len(check_ids)} validation images; "
                              "not written (use export.precision: float32)")
        check = f"masks agree at Dice {agreement:.4f} on {len(check_ids)} validation images"
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(content)
    print(f"export: {args.model} -> {args.out} ({precision}, {len(content) / 1e6:.1f} MB; {check})")


if __name__ == "__main__":
    run(main)
