"""predict: U-Net nucleus probabilities for the test split, at img_size and at native resolution."""
import argparse

import numpy as np
import pandas as pd

from nucseg.data import native_gray, select
from nucseg.evaluate import load_model, predict_probs
from nucseg.io import RawSource, find_raw, read_ids, save_npy, save_npz
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
    model = load_model(args.model)
    ids = read_ids(args.ids)
    images = select(np.load(args.images), pd.read_csv(args.meta)["id"].tolist(), ids)
    probs = predict_probs(model, images, batch_size=p["batch_size"], tta=p["tta"])
    source = RawSource(find_raw(args.raw) or args.raw)
    grays = (native_gray(source.read_image(i), p["normalization"]) for i in ids)
    native = {i: probs.astype(np.float16) for i, probs in zip(ids, iter_native_probs(
        model, grays, tile=p["tile"], overlap=p["overlap"], batch_size=p["batch_size"], tta=p["tta"]))}
    save_npz(args.native, native)
    save_npy(args.out, probs.astype(np.float16))
    print(f"predict: {probs.shape} probabilities -> {args.out}; {len(native)} native -> {args.native}")


if __name__ == "__main__":
    run(main)
