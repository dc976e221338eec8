"""predict: U-Net nucleus probabilities for the test split, at native resolution and at img_size.

At native resolution the images are cut into `base.tile`-pixel windows as in training. The
img_size probabilities (scored beside Otsu's at img_size) are the native ones resized to
img_size; with ``tile: 0`` the model predicts each image resized as a whole, as it trained.
"""
import argparse

import numpy as np

from nucseg.data import native_gray, read_meta, resize, select
from nucseg.evaluate import load_model, predict_probs
from nucseg.io import load_npy, open_raw, read_ids, restore_fix, save_npy, save_npz
from nucseg.params import load_params, run
from nucseg.predict import iter_native_probs


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True, help="ingested images (img_size)")
    parser.add_argument("--meta", required=True)
    parser.add_argument("--raw", required=True, help="the raw data, for native resolution")
    parser.add_argument("--ids", required=True, help="the ids to predict, one per line")
    parser.add_argument("--out", required=True, help="probabilities at img_size (.npy, in --ids order)")
    parser.add_argument("--native", required=True, help="probabilities at native resolution (.npz by id)")
    args = parser.parse_args()
    p = load_params("ingest", "predict")
    model = load_model(args.model, fix=restore_fix(args.model))
    ids = read_ids(args.ids)
    source = open_raw(args.raw)
    grays = (native_gray(source.read_image(i), p["normalization"]) for i in ids)
    native = dict(zip(ids, iter_native_probs(model, grays, tile=p["tile"], overlap=p["overlap"],
                                             batch_size=p["batch_size"], tta=p["tta"])))
    if p["tile"]:
        probs = np.stack([resize(native[i], p["img_size"]) for i in ids])
    else:
        images = select(load_npy(args.images), read_meta(args.meta)["id"].tolist(), ids,
                        where=f"{args.ids} in {args.images}")
        probs = predict_probs(model, images, batch_size=p["batch_size"], tta=p["tta"])
    native = {i: prob.astype(np.float16) for i, prob in native.items()}
    save_npz(args.native, native)
    save_npy(args.out, probs.astype(np.float16))
    print(f"predict: {probs.shape} probabilities -> {args.out}; {len(native)} native -> {args.native}")


if __name__ == "__main__":
    run(main)
