"""train: the U-Net on the train split, best checkpoint on the val split.

With `base.tile` > 0 the model trains on windows of `tile` native pixels (one drawn per image
and epoch) and validates on every prediction window of the val images, so that it sees images at
the scale at which `predict` cuts them; with 0, on whole images resized to img_size.
"""
import argparse
import hashlib
from pathlib import Path

from nucseg.data import read_meta, select
from nucseg.io import load_npy, open_raw, read_ids, save_csv, save_json
from nucseg.model import weights_file
from nucseg.modelinfo import model_settings
from nucseg.params import load_params, run
from nucseg.train import train, versions
from nucseg.windows import source_windows


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--raw", required=True, help="the raw data, for windows at native resolution")
    parser.add_argument("--labels", required=True, help="native-resolution truth label images (.npz)")
    parser.add_argument("--split", required=True, help="folder with train.txt and val.txt")
    parser.add_argument("--model", required=True, help="the .keras file to write")
    parser.add_argument("--config", required=True, help="the resolved configuration, beside the model")
    parser.add_argument("--history", required=True, help="per-epoch CSV")
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    p = load_params("ingest", "train")
    if p["seed"] is None:   # train.seed null: base.seed, which the split also uses
        p["seed"] = load_params()["seed"]
    overlap = load_params("predict", with_base=False)["overlap"]
    levels = load_params("robustness", with_base=False)["severities"]

    train_ids, val_ids = read_ids(Path(args.split) / "train.txt"), read_ids(Path(args.split) / "val.txt")
    if p["tile"]:
        source = open_raw(args.raw)
        windows = dict(tile=p["tile"], size=p["img_size"], normalization=p["normalization"])
        x_train, y_train, groups = source_windows(source, args.labels, train_ids, **windows)
        x_val, y_val, _ = source_windows(source, args.labels, val_ids, overlap=overlap, **windows)
    else:
        ids = read_meta(args.meta)["id"].tolist()
        images, masks = load_npy(args.images), load_npy(args.masks)
        where = f"{args.split}/*.txt in {args.images} and {args.masks}"
        x_train, y_train, groups = select(images, ids, train_ids, where), select(masks, ids, train_ids, where), None
        x_val, y_val = select(images, ids, val_ids, where), select(masks, ids, val_ids, where)
    augment = {k: tuple(v) if isinstance(v, list) else v for k, v in (p["augment"] or {}).items()}
    if augment.get("degrade"):
        augment.update(degrade_levels=levels, normalization=p["normalization"])
    history, info = train(
        x_train, y_train, x_val, y_val, args.model, train_groups=groups,
        encoder_weights=p["encoder_weights"], freeze_encoder=p["freeze_encoder"], dropout=p["dropout"],
        loss=p["loss"], pos_weight=float(p["pos_weight"]), learning_rate=float(p["learning_rate"]),
        lr_decay=p["lr_decay"], epochs=p["epochs"], patience=p["patience"], batch_size=p["batch_size"],
        augment=augment, finetune_epochs=p["finetune_epochs"],
        finetune_learning_rate=float(p["finetune_learning_rate"]), seed=p["seed"], strategy=p["strategy"],
        settings=model_settings(p["tile"], p["img_size"], p["normalization"]),
    )
    weights = weights_file(p["encoder_weights"], p["img_size"])   # the file Keras loaded (None: none)
    config = {"params": p, "img_size": p["img_size"], "tile": p["tile"], "n_train": len(train_ids),
              "n_val": len(val_ids), "train_windows": len(x_train), "val_windows": len(x_val),
              "val_overlap": overlap, "degrade_levels": augment.get("degrade_levels"),
              "encoder_weights_file": weights and {"path": str(weights), "sha256": sha256_of(weights)},
              "result": info, "versions": versions()}
    save_json(args.config, config)
    save_csv(args.history, history)
    save_json(args.metrics, info)
    print(f"train: best epoch {info['best_epoch']} of {info['epochs_run']}, val loss {info['best_val_loss']:.4f}, "
          f"val Dice {info['best_val_dice']:.4f}, {info['seconds']:.0f} s")


if __name__ == "__main__":
    run(main)
