"""The `nucseg` command: segment new images, score a model on any labelled set, compare two runs."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

from .io import NucsegError, all_or_nothing, leftover_temporaries, save_csv, save_json
from .params import FILL_HOLES

# the pipeline's defaults, for a model that carries no settings and has no config.json beside it
DEFAULT_SETTINGS = {"tile": 256, "normalization": "percentile"}
MODEL_SUFFIXES = (".tflite", ".keras")
PREDICT_EXIT = ("exit status: 0 every image segmented; 1 bad input or no image segmented; 2 some images "
                "failed (summary.csv's error column says why); 130 interrupted (nothing written: "
                "the output folder is as it was).")


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one line and status 1, like any other bad input (argparse's
    usage block and status 2 would clash with predict's 'some images failed')."""

    def error(self, message):
        self.exit(1, f"error: {self.prog}: {message}; see '{self.prog} --help'\n")


def _segmenter_args(parser):
    parser.add_argument("--model", default="models/unet.tflite",
                        help="trained model: the export stage's .tflite (about 2x faster on a CPU) or the "
                             ".keras file (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default: %(default)s)")
    parser.add_argument("--tile", type=int, default=None,
                        help="native pixels per model input: images are cut into overlapping windows of this "
                             "size (default: the tile the model was trained with, stored in the model file or "
                             "its config.json, else 256)")
    parser.add_argument("--overlap", type=int, default=None,
                        help="tile overlap in pixels, from 0 to half the tile (default: 64, or half the tile where "
                             "that is less)")
    parser.add_argument("--resize", action="store_true",
                        help="no tiling: resize every image as a whole to the model's input (--tile 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per model call (default: %(default)s)")
    parser.add_argument("--tta", action="store_true",
                        help="average over the four flips (four model passes: 1.4 to 2x slower per image)")
    parser.add_argument("--min-size", type=int, default=30, help="smallest nucleus kept, pixels (default: %(default)s)")
    holes = parser.add_mutually_exclusive_group()
    holes.add_argument("--fill-holes", choices=FILL_HOLES, default="all",
                       help="all: every hole of the mask, before splitting; nucleus: only holes inside one nucleus "
                            "(a gap that a ring of touching nuclei encloses stays background); none "
                            "(default: %(default)s)")
    holes.add_argument("--no-fill-holes", dest="fill_holes", action="store_const", const="none",
                       help="the same as --fill-holes none")
    parser.add_argument("--no-split", action="store_true", help="do not split touching nuclei")
    parser.add_argument("--invert-above", type=float, default=0.5,
                        help="Otsu: invert its mask where the foreground covers more than this fraction of the "
                             "image, as otsu.invert_above (default: %(default)s)")


def _unet(args):
    """`(model, settings)` for the U-Net: the model loaded and how it saw its training images
    (`nucseg.modelinfo`: from the model file, else the config.json beside it, else the
    pipeline's defaults with a note), --tile (0 with --resize) over its tile. The overlap is
    checked against that tile before the model loads; the note comes once it has loaded (a wrong
    file is refused first)."""
    from .modelinfo import settings_of

    if args.resize and args.tile is not None:
        raise NucsegError(f"--resize and --tile {args.tile}: give one (--resize is --tile 0)")
    settings, where = settings_of(args.model)
    known, source = settings is not None, f"from {where}" if where else "the default"
    settings = settings or dict(DEFAULT_SETTINGS)
    if args.resize or args.tile is not None:
        settings = {**settings, "tile": 0 if args.resize else args.tile}
        source = "--resize" if args.resize else "--tile"
    _check_numbers(args, settings["tile"], source)
    model = _load_model(args.model)
    if not known:   # a model trained otherwise sees images at the wrong scale or contrast
        tile = "" if args.resize or args.tile is not None else f"--tile {settings['tile']} and "
        print(f"note: {args.model} carries no settings and there is no config.json beside it; using "
              f"{tile}{settings['normalization']} normalization", file=sys.stderr)
    return model, settings


def _overlap(args, tile):
    """--overlap, or `nucseg.predict.default_overlap` of the `tile`."""
    from .predict import default_overlap

    return args.overlap if args.overlap is not None else default_overlap(tile)


def _check_numbers(args, tile=None, source="--tile"):
    """Refuse out-of-range numeric options before anything is loaded (with `tile`, the one
    resolved from --tile or the model, named by `source`: the overlap against it)."""
    from .predict import setting_problems

    tile = (args.tile or 0) if tile is None else tile
    problems = setting_problems(args.threshold, args.batch_size, tile, _overlap(args, tile), tile_source=source)
    problems += [("min_size", args.min_size, "0 or more pixels, e.g. 30")] * (args.min_size < 0)
    problems += [("invert_above", args.invert_above, "a fraction from 0 to 1, e.g. 0.5")] * \
        (not 0 <= args.invert_above <= 1)
    if problems:
        name, value, use = problems[0]
        raise NucsegError(f"--{name.replace('_', '-')} {value}: out of range; use {use}")


def _check_writable(path, option, folder):
    """Refuse an output path that cannot be written, before any work (nothing is created here)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise NucsegError(f"{path}: a file, not a folder; give {option} a new or existing folder")
    if not folder and path.is_dir():
        raise NucsegError(f"{path}: a folder; give {option} a file name, e.g. {path / 'out.csv'}")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NucsegError(f"{path}: {existing} is a file, not a folder; give {option} a path in a folder")
    reason = _cannot_write_in(existing)
    if reason:
        raise NucsegError(f"{path}: cannot write in {existing} ({reason}); give {option} a folder you can write to")


def _cannot_write_in(folder):
    """Why no file can be made in `folder`, or None. Tried for real: os.access says yes to root
    everywhere, even in /proc or on a read-only disk."""
    try:
        tempfile.TemporaryFile(dir=folder, prefix=".nucseg-probe-").close()
    except OSError as exc:
        return exc.strerror
    return None


def _segmenter(args, method, model=None, settings=None):
    from .predict import Segmenter

    settings = settings or DEFAULT_SETTINGS
    return Segmenter(
        method=method, model=model, threshold=args.threshold, tile=settings["tile"],
        normalization=settings["normalization"], invert_above=args.invert_above,
        overlap=_overlap(args, settings["tile"]), batch_size=args.batch_size, tta=args.tta,
        instance_params=dict(min_size=args.min_size, fill_holes=args.fill_holes,
                             split_touching=not args.no_split),
    )


def _not_model(path, reason=""):
    return NucsegError(f"{path}: not a nucseg model{reason}; pass the export stage's .tflite or the train "
                       "stage's .keras (models/unet.tflite, models/unet.keras)")


def _check_model_path(path):
    if Path(path).is_dir():
        raise _not_model(path, " (a folder)")
    if not Path(path).is_file():
        raise NucsegError(f"{path}: no model there; train one with 'dvc repro' or pass --model PATH")
    if Path(path).suffix.lower() not in MODEL_SUFFIXES:
        raise _not_model(path)


def _load_model(path):
    _check_model_path(path)
    from .evaluate import load_model

    try:
        model = load_model(path)
    except NucsegError:
        raise
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors ... for a bad file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if reason.startswith("File not found"):   # Keras's words for any file that is not a whole zip
            reason = "not a whole .keras zip: damaged or cut short? copy it again"
        raise _not_model(path, f" ({reason})") from None
    # another Keras model loads too: refuse it before any image is read (a .tflite is checked on load)
    if Path(path).suffix.lower() == ".tflite":
        return model
    shapes = [getattr(model, "input_shape", None), getattr(model, "output_shape", None)]
    if any(not (isinstance(shape, tuple) and len(shape) == 4 and shape[3] == 1 and shape[1] == shape[2]
                and isinstance(shape[1], int)) for shape in shapes):
        raise _not_model(path, f" (it maps {shapes[0]} to {shapes[1]}; a nucseg model maps a square grayscale "
                               "image (size, size, 1) to one of logits)")
    return model


def cmd_predict(args):
    from .predict import IMAGE_SUFFIXES, discover, predict_images

    _check_numbers(args)
    out = Path(args.out)
    _check_writable(out, "--out", folder=True)
    for sub in (out / "masks", out / "labels"):   # a run that cannot finish would write nothing at its end
        if sub.exists() and not sub.is_dir() or sub.is_dir() and _cannot_write_in(sub):
            what = "a file" if not sub.is_dir() else "a folder you cannot write to"
            raise NucsegError(f"{sub}: {what}, where nucseg writes its {sub.name}; fix that or give --out "
                              "another folder")
    if (out / "summary.csv").is_dir():
        raise NucsegError(f"{out / 'summary.csv'}: a folder, where nucseg writes its summary; fix that or give "
                          "--out another folder")
    if args.rle:
        _check_writable(args.rle, "--rle", folder=False)
    # what an earlier run wrote there is not input (any other run's masks/ and labels/ are left out too)
    notes = []
    inputs = discover(args.inputs, exclude=[out / "labels", out / "masks"], notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not inputs:
        raise NucsegError(f"no images found in {' '.join(args.inputs)} (looked for {', '.join(IMAGE_SUFFIXES)})")
    if args.rle:
        _check_rle(Path(args.rle), out, inputs, args.model if args.method == "unet" else None)
    if args.method == "otsu":
        _note_ignored(args)
    elif args.invert_above != 0.5:
        print("note: --method unet ignores --invert-above (Otsu's option)", file=sys.stderr)
    model, settings = _unet(args) if args.method == "unet" else (None, None)
    _remove_killed_runs_files(out)
    try:
        with _signals_as_interrupt():
            summary = predict_images(inputs, _segmenter(args, args.method, model, settings), out, rle_csv=args.rle)
    except KeyboardInterrupt:
        print(f"interrupted; nothing written, {out} is as it was", file=sys.stderr)
        return 130
    failed = summary["error"].fillna("").astype(bool).sum()
    done = len(summary) - failed
    where = f"results in {out / 'summary.csv'}" if done else f"nothing written, {out} is as it was"
    print(f"{done} of {len(summary)} images segmented, {failed} failed; "
          f"{int(summary['nuclei'].fillna(0).sum())} nuclei; {where}")
    return 0 if not failed else 1 if not done else 2


def _check_rle(rle, out, inputs, model=None):
    """Refuse an --rle path that would overwrite an input, the model, a run's summary or any file
    other than an earlier submission (a CSV of ImageId, EncodedPixels) or an empty one."""
    from .predict import IMAGE_SUFFIXES, RLE_COLUMNS, has_header

    target = rle.resolve()
    ours = [(out / "summary.csv").resolve()] + [Path(p).resolve() for p in [model] if p]
    if (target in ours or rle.suffix.lower() in IMAGE_SUFFIXES + MODEL_SUFFIXES + (".zip",)
            or rle.is_file() and rle.stat().st_size and (rle.suffix.lower() != ".csv"
                                                         or not has_header(rle, RLE_COLUMNS))
            or any(Path(item.name).resolve() == target for item in inputs)):
        raise NucsegError(f"--rle {rle}: would overwrite an input, the model, a run's summary.csv or a file that "
                          "is not an earlier submission (ImageId,EncodedPixels); give it a new file name, "
                          "e.g. submission.csv")


def _remove_killed_runs_files(out):
    """The temporary outputs a killed run (SIGKILL, out of memory) left in `out`: removed, with a note."""
    left = [p for folder in (out, out / "masks", out / "labels") for p in leftover_temporaries(folder)]
    for path in left:
        path.unlink(missing_ok=True)
    if left:
        print(f"note: removed {len(left)} temporary files an earlier, killed run left in {out}", file=sys.stderr)


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGTERM and SIGHUP (a batch system stopping the job, a closed terminal) end the run as Ctrl-C
    does: nothing of it is kept and its temporary files go."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), interrupt)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


UNET_OPTIONS = ("model", "threshold", "tile", "resize", "overlap", "batch_size", "tta")


def _note_ignored(args):
    """Otsu has no model: say which of the U-Net's options were given for nothing (set off their default)."""
    parser = argparse.ArgumentParser()
    _segmenter_args(parser)
    defaults = vars(parser.parse_args([]))
    given = [f"--{name.replace('_', '-')}" for name in UNET_OPTIONS if getattr(args, name) != defaults[name]]
    if given:
        print(f"note: --method otsu ignores {', '.join(given)} (the U-Net's options)", file=sys.stderr)


def cmd_evaluate(args):
    from .labelled import evaluate_labelled

    _check_numbers(args)
    if args.out:
        _check_writable(args.out, "--out", folder=False)
    if args.solution and not Path(args.solution).is_file():
        raise NucsegError(f"{args.solution}: no such file; give --solution the RLE CSV "
                          "(ImageId, EncodedPixels[, Height, Width])")
    model, settings = _unet(args) if "unet" in args.method else (None, None)
    segmenters = {m: _segmenter(args, m, model if m == "unet" else None, settings) for m in args.method}
    summary, rows = evaluate_labelled(args.data, segmenters, solution=args.solution)
    print(f"{summary['n_images']} images")
    print(f"{'method':8s} {'Dice':>7s} {'IoU':>7s} {'prec':>7s} {'recall':>7s} {'DSB':>7s} {'F1@.5':>7s} {'count MAE':>9s}")
    for m in args.method:
        px, inst = summary[m]["pixel"]["mean"], summary[m]["instance"]
        print(f"{m:8s} {px['dice']:7.4f} {px['iou']:7.4f} {px['precision']:7.4f} {px['recall']:7.4f} "
              f"{inst['dsb']:7.4f} {inst['f1_iou50']:7.4f} {inst['count_mae']:9.2f}")
    if args.out:
        with all_or_nothing():   # the summary and its per-image table land together
            save_json(args.out, summary)
            save_csv(Path(args.out).with_suffix(".per_image.csv"), rows)
    return 0


def cmd_compare(args):
    from . import compare

    if not 0 <= args.seed < 2**32:
        raise NucsegError(f"--seed {args.seed}: out of range; use an integer from 0 to 2**32 - 1, e.g. 0")
    if args.out:
        _check_writable(args.out, "--out", folder=False)
    table, notes = compare.compare(args.a, args.b, method=args.method, seed=args.seed, common=args.common)
    shown = table if args.all else compare.summary(table)
    print(f"{args.method}, image by image: a = {args.a}, b = {args.b}; b - a with its 95% paired bootstrap "
          "interval over the images (not over retrainings)")
    print(shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4f}"))
    for note in notes:
        print(f"note: {note}")
    if args.out and Path(args.out).suffix.lower() == ".json":
        save_json(args.out, table.astype(object).where(table.notna(), None).to_dict(orient="records"))
    elif args.out:
        save_csv(args.out, table)
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
    # TensorFlow's start-up lines (CPU features, absl) before any output or error: errors still show
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _Parser(prog="nucseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="segment images at their own resolution",
                       description="Segment image files, folders, or Kaggle-layout folders/zips. Writes "
                                   "masks/<id>.png, labels/<id>.tif (16-bit instances) and summary.csv.",
                       epilog=PREDICT_EXIT)
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

    c = sub.add_parser("compare", help="two runs' per-image scores, paired image by image",
                       description="Is b better than a, or is the difference noise? Pairs the images both runs "
                                   "scored: mean difference (b - a), its 95% paired bootstrap interval over the "
                                   "images, and on how many images each scores higher. A run is a per-image CSV (plots/"
                                   "per_image.csv, plots/robustness_per_image.csv, nucseg evaluate --out's "
                                   "<name>.per_image.csv) or a Git revision or DVC experiment name, whose "
                                   "committed plots/ CSVs are read.")
    c.add_argument("a", help="the run compared against: CSV file, commit, branch or experiment name")
    c.add_argument("b", help="the other run")
    c.add_argument("--method", choices=("unet", "otsu"), default="unet")
    c.add_argument("--all", action="store_true", help="print every severity and metric (default: test "
                                                          "images, undamaged and each degradation's worst Dice)")
    c.add_argument("--common", action="store_true", help="pair the images both runs scored when their image "
                                                             "sets differ (refused otherwise)")
    c.add_argument("--out", help="write the full table here (.json or .csv)")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    c.set_defaults(func=cmd_compare)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NucsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:   # a file that cannot be read or written: one line naming it
        name = exc.filename if exc.filename is not None else ""
        print(f"error: {name}: {exc.strerror or exc}" if name else f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
