"""export: the trained U-Net as a LiteRT (TensorFlow Lite) model, which the predict and
robustness stages run: the same float32 arithmetic at about twice TensorFlow's speed on a CPU
(see nucseg/lite.py). `nucseg predict --model models/unet.tflite` runs it on new images."""
import argparse

import numpy as np

from nucseg.evaluate import forward, load_model
from nucseg.io import NucsegError, atomic_path
from nucseg.lite import BATCH, LiteModel, convert
from nucseg.params import run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the trained .keras model")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    args = parser.parse_args()
    model = load_model(args.model)
    content = convert(model)
    # the converted model must compute what the Keras model computes, before it replaces anything
    lite, rng = LiteModel(content, name=args.out), np.random.default_rng(0)
    gap = 0.0
    for n in (BATCH + 3, 1):   # every entry point: a full batch, a padded one, a single image
        images = rng.random((n, *model.input_shape[1:]), dtype=np.float32)
        gap = max(gap, float(np.abs(lite(images) - forward(model)(images)).max()))
    if gap > 1e-3:
        raise NucsegError(f"{args.out}: the converted model differs from {args.model} by {gap:.2g} in probability; "
                          "not written (check the tensorflow and ai-edge-litert versions)")
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(content)
    print(f"export: {args.model} -> {args.out} ({len(content) / 1e6:.1f} MB; max probability difference {gap:.1e})")


if __name__ == "__main__":
    run(main)
