"""The `nucseg` command: segment new images, score a model on any labelled set."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .io import NucsegError, save_csv, save_json


def _segmenter_args(parser):
    parser.add_argument("--model", default="models/unet.tflite",
                        help="trained model: the export stage's .tflite (about 2x faster on a CPU) or the "
                             ".keras file (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default: %(default)s)")
    parser.add_argument("--tile", type=int, default=None,
                        help="native pixels per model input: images are cut into overlapping windows of this "
                             "size (default: the model's training tile from config.json beside it, else 256)")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels (default: %(default)s)")
    parser.add_argument("--resize", action="store_true",
                        help="no tiling: resize every image as a whole to the model's input (--tile 0)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tta", action="store_true", help="average over the four flips (4x slower)")
    parser.add_argument("--min-size", type=int, default=30, help="smallest nucleus kept, pixels (default: %(default)s)")
    parser.add_argument("--no-fill-holes", action="store_true")
    parser.add_argument("--no-split", action="store_true", help="do not split touching nuclei")


def model_tile(model_path, default=256):
    """The tile a model was trained with, from the config.json the train stage writes beside it."""
    config = Path(model_path).with_name("config.json")
    try:
        return int(json.loads(config.read_text())["tile"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def _segmenter(args, method, model=None):
    from .predict import Segmenter

    tile = 0 if args.resize else args.tile if args.tile is not None else model_tile(args.model)
    return Segmenter(
        method=method, model=model, threshold=args.threshold, tile=tile,
        overlap=args.overlap, batch_size=args.batch_size, tta=args.tta,
        instance_params=dict(min_size=args.min_size, fill_holes=not args.no_fill_holes,
                             split_touching=not args.no_split),
    )


def _load_model(path):
    if not Path(path).is_file():
        raise NucsegError(f"{path}: no model there; train one with 'dvc repro' or pass --model PATH")
    from .evaluate import load_model

    return load_model(path)


def cmd_predict(args):
    from .predict import discover, predict_images

    inputs = discover(args.inputs)
    if not inputs:
        raise NucsegError(f"no images found in {' '.join(args.inputs)} (looked for {', '.join(('.png', '.tif', '.jpg'))} ...)")
    model = _load_model(args.model) if args.method == "unet" else None
    summary = predict_images(inputs, _segmenter(args, args.method, model), args.out, rle_csv=args.rle)
    failed = summary["error"].fillna("").astype(bool).sum()
    done = len(summary) - failed
    print(f"{done} of {len(summary)} images segmented, {failed} failed; "
          f"{int(summary['nuclei'].fillna(0).sum())} nuclei; results in {args.out}/ (summary.csv)")
    return 1 if failed and not done else 0


def cmd_evaluate(args):
    from .labelled import evaluate_labelled

    model = _load_model(args.model) if "unet" in args.method else None
    segmenters = {m: _segmenter(args, m, model if m == "unet" else None) for m in args.method}
    summary, rows = evaluate_labelled(args.data, segmenters, solution=args.solution)
    print(f"{summary['n_images']} images")
    print(f"{'method':8s} {'Dice':>7s} {'IoU':>7s} {'prec':>7s} {'recall':>7s} {'DSB':>7s} {'F1@.5':>7s} {'count MAE':>9s}")
    for m in args.method:
        px, inst = summary[m]["pixel"]["mean"], summary[m]["instance"]
        print(f"{m:8s} {px['dice']:7.4f} {px['iou']:7.4f} {px['precision']:7.4f} {px['recall']:7.4f} "
              f"{inst['dsb']:7.4f} {inst['f1_iou50']:7.4f} {inst['count_mae']:9.2f}")
    if args.out:
        save_json(args.out, summary)
        save_csv(Path(args.out).with_suffix(".per_image.csv"), rows)
    return 0


def cmd_study(args):
    from . import study

    if args.action == "queue":
        study.queue(args.study, dry_run=args.dry_run)
        print("queued; run them with: dvc queue start   (follow: dvc queue status)")
    else:
        table = study.report(args.study, args.out)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nucseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="segment images at their own resolution",
                       description="Segment image files, folders, or Kaggle-layout folders/zips. Writes "
                                   "masks/<id>.png, labels/<id>.tif (16-bit instances) and summary.csv.")
    p.add_argument("inputs", nargs="+", help="image files, folders or .zip")
    p.add_argument("--method", choices=("unet", "otsu"), default="unet")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--rle", help="also write a Kaggle submission CSV (ImageId, EncodedPixels) here")
    _segmenter_args(p)
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", help="score the model and/or Otsu on a labelled set",
                       description="Pixel and instance metrics at native resolution on a Kaggle-layout "
                                   "folder/zip with masks/, or on images plus an RLE solution CSV.")
    e.add_argument("data", help="Kaggle-layout folder or zip")
    e.add_argument("--solution", help="RLE CSV: ImageId, EncodedPixels[, Height, Width]")
    e.add_argument("--method", nargs="+", choices=("unet", "otsu"), default=["unet", "otsu"])
    e.add_argument("--out", help="write the metrics JSON here (and <name>.per_image.csv beside it)")
    _segmenter_args(e)
    e.set_defaults(func=cmd_evaluate)

    st = sub.add_parser("study", help="the notebook's studies as DVC experiment sweeps",
                        description="queue: one 'dvc exp run --queue' per setting of a study; report: "
                                    "bar chart and table of the finished runs in plots/studies/.")
    st.add_argument("action", choices=("queue", "report"))
    st.add_argument("study", choices=("loss", "pos_weight", "augment"))
    st.add_argument("--dry-run", action="store_true", help="print the commands only")
    st.add_argument("--out", default="plots/studies")
    st.set_defaults(func=cmd_study)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NucsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
