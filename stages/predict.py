"""predict: U-Net nucleus probabilities for the test split."""
import argparse

import numpy as np
import pandas as pd

from nucseg.data import select
from nucseg.evaluate import load_model, predict_probs
from nucseg.io import read_ids, save_npy
from nucseg.params import load_params, run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--ids", required=True, help="the ids to predict, one per line")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = load_params("predict")
    ids = read_ids(args.ids)
    images = select(np.load(args.images), pd.read_csv(args.meta)["id"].tolist(), ids)
    probs = predict_probs(load_model(args.model), images, batch_size=params["batch_size"])
    save_npy(args.out, probs.astype(np.float16))
    print(f"predict: {probs.shape} probabilities -> {args.out}")


if __name__ == "__main__":
    run(main)
