"""train: the U-Net on the train split, best checkpoint on the val split."""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from nucseg.data import select
from nucseg.io import read_ids, save_csv, save_json
from nucseg.params import load_params, run
from nucseg.train import train, versions


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--split", required=True, help="folder with train.txt and val.txt")
    parser.add_argument("--model", required=True, help="the .keras file to write")
    parser.add_argument("--config", required=True, help="the resolved configuration, beside the model")
    parser.add_argument("--history", required=True, help="per-epoch CSV")
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    p = load_params("train")
    levels = load_params("robustness", with_base=False)["severities"]

    ids = pd.read_csv(args.meta)["id"].tolist()
    images, masks = np.load(args.images), np.load(args.masks)
    train_ids, val_ids = read_ids(Path(args.split) / "train.txt"), read_ids(Path(args.split) / "val.txt")
    augment = {k: tuple(v) if isinstance(v, list) else v for k, v in (p["augment"] or {}).items()}
    if augment.get("degrade"):
        augment["degrade_levels"] = levels
    history, info = train(
        select(images, ids, train_ids), select(masks, ids, train_ids),
        select(images, ids, val_ids), select(masks, ids, val_ids),
        args.model,
        encoder_weights=p["encoder_weights"], freeze_encoder=p["freeze_encoder"], dropout=p["dropout"],
        loss=p["loss"], pos_weight=float(p["pos_weight"]), learning_rate=float(p["learning_rate"]),
        lr_decay=p["lr_decay"], epochs=p["epochs"], patience=p["patience"], batch_size=p["batch_size"],
        augment=augment, finetune_epochs=p["finetune_epochs"],
        finetune_learning_rate=float(p["finetune_learning_rate"]), seed=p["seed"], strategy=p["strategy"],
    )
    config = {"params": p, "img_size": int(images.shape[1]), "n_train": len(train_ids),
              "n_val": len(val_ids), "result": info, "versions": versions()}
    save_json(args.config, config)
    save_csv(args.history, history)
    save_json(args.metrics, info)
    print(f"train: best epoch {info['best_epoch']} of {info['epochs_run']}, val loss {info['best_val_loss']:.4f}, "
          f"val Dice {info['best_val_dice']:.4f}, {info['seconds']:.0f} s")


if __name__ == "__main__":
    run(main)
