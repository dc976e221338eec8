"""Reading a stage's section of params.yaml, checked, and running stage scripts with one-line errors.

Every key of params.yaml has a rule in `SCHEMA` (its type, range or choices). `load_params`
checks every section in the file, not only the stage's own, each complete, so that a bad or
missing value stops the first stage that reads params (before a half-hour training, say) with
one line:

    error: params.yaml: split.val is 1.5; use a number from 0 to 1 (above 0 and below 1), e.g. 0.1
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

from .io import NucsegError, UnknownIds, all_or_nothing


class Rule:
    """A param's check: `accepts(value)` and, for the error, what to `use` instead."""

    def __init__(self, accepts, use):
        self.accepts, self.use = accepts, use


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low, example, multiple=1, high=None):
    use = (f"an integer >= {low}" if high is None else f"an integer from {low} to {high}") + \
        (f", a multiple of {multiple}" if multiple > 1 else "") + f", e.g. {example}"
    return Rule(lambda v: _is_int(v) and v >= low and (high is None or v <= high) and v % multiple == 0, use)


def number(low=-math.inf, high=math.inf, *, example, low_open=False, high_open=False, use=None):
    def accepts(v):
        return (_is_number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high))

    if use is None:
        if high == math.inf:
            use = f"a number {'>' if low_open else '>='} {low:g}, e.g. {example}"
        else:
            bounds = [f"above {low:g}"] * low_open + [f"below {high:g}"] * high_open
            use = f"a number from {low:g} to {high:g}" + (f" ({' and '.join(bounds)})" if bounds else "") + \
                f", e.g. {example}"
    return Rule(accepts, use)


def choice(*options):
    return Rule(lambda v: v in options, f"one of {', '.join(map(str, options))}")


def _is_range(v, low):
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_number, v)) and low <= v[0] <= v[1]


MAX_TILE = 4096   # native pixels: a window is resized to img_size; beyond this, memory runs out first
NORMALIZATIONS = ("percentile", "none")   # nucseg.data.normalize's methods
FILL_HOLES = ("all", "nucleus", "none")   # nucseg.instances.instances' ways of filling holes
BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
DEGRADATIONS = ("gaussian_noise", "poisson_noise", "blur", "linear_gradient", "radial_gradient", "low_contrast",
                "salt_and_pepper")   # nucseg.degrade.DEGRADATIONS' names (a test keeps them equal)
# each degradation's severity range and its first, clean level (nucseg.degrade)
SEVERITIES = {
    "gaussian_noise": (number(0, example=0.1), 0, "a sigma >= 0 on [0, 1] intensities"),
    "poisson_noise": (number(0, example=50), 0, "photons at the brightest pixel, >= 0 (0: no noise)"),
    "blur": (number(0, example=1.0), 0, "a sigma >= 0, pixels"),
    "linear_gradient": (number(0, 1, example=0.5), 0, "a strength from 0 to 1"),
    "radial_gradient": (number(0, 1, example=0.5), 0, "a strength from 0 to 1"),
    "low_contrast": (number(0, 1, low_open=True, example=0.2), 1, "a remaining contrast above 0, up to 1"),
    "salt_and_pepper": (number(0, 1, example=0.02), 0, "a fraction of pixels from 0 to 1"),
}

SCHEMA = {
    "base": {
        "seed": integer(0, 42, high=2**32 - 1),   # Keras' and numpy's seed range
        "img_size": integer(32, 128, multiple=32, high=1024),
        "tile": Rule(lambda v: _is_int(v) and (v == 0 or 32 <= v <= MAX_TILE),
                     f"0 (whole images) or an integer from 32 to {MAX_TILE}, e.g. 256"),
    },
    "ingest": {"normalization": choice(*NORMALIZATIONS)},
    "split": {"val": number(0, 1, low_open=True, high_open=True, example=0.1),
              "test": number(0, 1, low_open=True, high_open=True, example=0.1)},
    "otsu": {"invert_above": number(0, 1, example=0.5)},
    "train": {
        "encoder_weights": Rule(lambda v: isinstance(v, str) and v != "",
                                "imagenet, none or the path of a MobileNetV2 no-top .h5 file"),
        "freeze_encoder": Rule(lambda v: v is None or isinstance(v, bool), "null (frozen when pretrained), true or false"),
        "dropout": number(0, 1, high_open=True, example=0.0),
        "loss": choice("bce", "dice", "bce_dice"),
        "pos_weight": number(0, low_open=True, example=1.0),
        "learning_rate": number(0, low_open=True, example=0.001),
        "lr_decay": number(0, example=0.1),
        "epochs": integer(1, 10),
        "patience": integer(1, 15),
        "batch_size": integer(1, 16),
        "finetune_epochs": integer(0, 30),
        "finetune_learning_rate": number(0, low_open=True, example=0.0005),
        "strategy": choice("default", "mirrored", "multi_worker"),
        "seed": Rule(lambda v: v is None or (_is_int(v) and 0 <= v < 2**32),
                     "null (base.seed) or an integer from 0 to 2**32 - 1, e.g. 1"),
        "augment": Rule(lambda v: v is None or isinstance(v, dict), "a mapping of augmentations (or null: none)"),
    },
    "train.augment": {
        "brightness": Rule(lambda v: _is_range(v, -math.inf), "a range [low, high], e.g. [-0.1, 0.1]"),
        "contrast": Rule(lambda v: _is_range(v, 0) and v[0] > 0, "a range [low, high] of factors above 0, e.g. [0.8, 1.2]"),
        "shift": number(0, 0.5, example=0.05),
        "blur_sigma": number(0, example=1.0),
        "flip": BOOLEAN,
        "degrade": number(0, 1, example=0.5),
        "degrade_holdout": integer(0, 1),
        "degrade_exclude": Rule(lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v),
                                "a list of degradations never drawn, e.g. [blur] ([]: none)"),
    },
    "export": {"precision": choice("float32", "int8"),
               "min_agreement": number(0, 1, use="a Dice from 0 to 1 (e.g. 0.95)", example=0.95)},
    "predict": {"batch_size": integer(1, 32), "tta": BOOLEAN, "overlap": integer(0, 64)},
    "instances": {
        "min_size": integer(0, 30),
        "fill_holes": Rule(lambda v: v in FILL_HOLES, f"one of {', '.join(FILL_HOLES)} (true was all, false none)"),
        "split_touching": BOOLEAN,
        "split_depth": number(0, low_open=True, example=1.0),   # 0: every pixel a top, no split
        "smooth": number(0, example=1.0),
    },
    "evaluate": {"threshold": number(0, 1, low_open=True, high_open=True, example=0.5),
                 "gallery_images": integer(1, 6)},
    "robustness": {
        "degradations": Rule(lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(d, str) for d in v),
                             f"a list of degradations ({', '.join(DEGRADATIONS)})"),
        # (each degradation's list is checked on its own below, to name it in the error)
        "severities": Rule(lambda v: isinstance(v, dict), "a mapping from each degradation to its list of severities"),
        "example": Rule(lambda v: isinstance(v, str), "a test image id, or \"\" for the first"),
    },
}


def _check_section(path, name, values, complete=True):
    schema = SCHEMA[name]
    if not isinstance(values, dict):
        raise NucsegError(f"{path}: '{name}' is not a section of keys; see params.yaml in the repository")
    for key, value in values.items():
        dotted = f"{name}.{key}"
        if key not in schema:
            raise NucsegError(f"{path}: {dotted} is not a nucseg param; fix its spelling or remove it "
                              f"(the {name} params: {', '.join(schema)})")
        if not schema[key].accepts(value):
            raise NucsegError(f"{path}: {dotted} is {value!r}; use {schema[key].use}")
        if dotted in SCHEMA and value:
            _check_section(path, dotted, value, complete=False)
    if complete:
        for key in schema:
            if key not in values:
                raise NucsegError(f"{path}: {name}.{key} is missing; add it (see params.yaml in the repository)")


def check_params(params, path="params.yaml"):
    """Check every section of `params` (the whole file): each a known one, complete, every value
    by its rule, and the rules across sections. Raises `NucsegError` naming the first bad key and
    what to use."""
    for name, values in params.items():
        if name not in SCHEMA or "." in name:
            sections = ", ".join(n for n in SCHEMA if "." not in n)
            raise NucsegError(f"{path}: {name!r} is not a nucseg section; fix its spelling or remove it "
                              f"(the sections: {sections})")
        _check_section(path, name, values or {})
    for name in SCHEMA:   # a whole section removed stops every stage too, not only the one that reads it
        if "." not in name and name not in params:
            raise NucsegError(f"{path}: no '{name}' section; add it (see params.yaml in the repository)")
    split = params.get("split") or {}
    if _is_number(split.get("val")) and _is_number(split.get("test")) and split["val"] + split["test"] >= 1:
        raise NucsegError(f"{path}: split.val + split.test is {split['val'] + split['test']:g}; "
                          "use fractions that leave images to train on (a sum below 1)")
    tile, overlap = (params.get("base") or {}).get("tile"), (params.get("predict") or {}).get("overlap")
    if _is_int(tile) and _is_int(overlap) and tile and overlap > tile // 2:
        raise NucsegError(f"{path}: predict.overlap is {overlap} with base.tile {tile}; use an overlap of at most "
                          f"half the tile ({tile // 2}: four windows a tile), e.g. a quarter of it ({tile // 4})")
    robustness = params.get("robustness") or {}
    severities = robustness.get("severities") if isinstance(robustness.get("severities"), dict) else {}
    augment = (params.get("train") or {}).get("augment") or {}
    exclude = augment.get("degrade_exclude") or []
    for key, names in (("robustness.degradations", robustness.get("degradations") or []),
                       ("robustness.severities", severities), ("train.augment.degrade_exclude", exclude)):
        for name in names:
            if name not in DEGRADATIONS:
                raise NucsegError(f"{path}: {key} names {name!r}, which nucseg does not know; "
                                  f"use {', '.join(DEGRADATIONS)}")
    for name in robustness.get("degradations") or []:
        # (severities of another type than a mapping are reported by their section's rules)
        if isinstance(robustness.get("severities"), dict) and name not in severities:
            raise NucsegError(f"{path}: robustness.degradations names {name} but robustness.severities does not; "
                              "add its severities")
    for name, levels in severities.items():
        rule, clean, what = SEVERITIES[name]
        if not (isinstance(levels, list) and len(levels) >= 2 and all(map(_is_number, levels))
                and levels[0] == clean and all(map(rule.accepts, levels[1:]))):
            raise NucsegError(f"{path}: robustness.severities.{name} is {levels}; use {clean} (no damage) first, then "
                              f"one or more severities, each {what}, e.g. [{clean}, {rule.use.split('e.g. ')[-1]}]")
    drawn = augment.get("degrade")
    if _is_number(drawn) and drawn > 0 and severities and not set(severities) - set(exclude):
        raise NucsegError(f"{path}: train.augment.degrade_exclude leaves no degradation to draw from; "
                          "keep one out of the list, or set train.augment.degrade: 0")
    holdout = augment.get("degrade_holdout")
    if _is_number(augment.get("degrade")) and augment["degrade"] > 0 and _is_int(holdout) and holdout > 0:
        for name, levels in severities.items():
            if name not in exclude and len(levels) - 1 - holdout < 1:
                raise NucsegError(f"{path}: train.augment.degrade_holdout is {holdout} but "
                                  f"robustness.severities.{name} has {len(levels) - 1} severities; leave at least one "
                                  f"to train on: a holdout below {len(levels) - 1}, or train.augment.degrade: 0")
    base = params.get("base") or {}
    blur = augment.get("blur_sigma")
    if _is_number(blur) and _is_int(base.get("img_size")) and max(1, math.ceil(3 * blur)) >= base["img_size"]:
        raise NucsegError(f"{path}: train.augment.blur_sigma is {blur:g} with base.img_size {base['img_size']}; "
                          f"use a sigma of at most {(base['img_size'] - 1) / 3:.4g} (its kernel reaches 3 sigma "
                          "and must stay inside the image), e.g. 1.0")


def load_params(*sections, path="params.yaml", with_base=True):
    """The `sections` of params.yaml merged, in order, over its `base` section (seed, size, tile),
    after checking the whole file (`check_params`)."""
    try:   # YAML 1.2, as DVC reads and writes it: 1e-05 is a number (YAML 1.1 would read text)
        params = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8")) or {}
    except YAMLError as exc:
        where = ' '.join(str(exc).split()).replace('"<unicode string>"', str(path))
        raise NucsegError(f"{path}: not valid YAML ({where}); fix it there") from None
    except UnicodeDecodeError as exc:
        raise NucsegError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if not isinstance(params, dict):
        raise NucsegError(f"{path}: not a mapping of sections; see params.yaml in the repository")
    for section in sections + (("base",) if with_base else ()):
        if section not in params:
            raise NucsegError(f"{path}: no '{section}' section; add it (see params.yaml in the repository)")
    check_params(params, path)
    weights = (params.get("train") or {}).get("encoder_weights")
    if "train" in sections and weights.lower() not in ("imagenet", "none") and not Path(weights).is_file():
        # only where training reads it: a queued experiment's copy of the repository lacks an untracked file
        raise NucsegError(f"{path}: train.encoder_weights is {weights!r}, which is no file (from {Path.cwd()}); "
                          "use imagenet, none or the path of a MobileNetV2 no-top .h5 file")
    merged = dict(params.get("base", {})) if with_base else {}
    for section in sections:
        values = params[section] or {}
        clash = set(values) & set(merged) - set(params.get("base", {}) if with_base else ())
        if clash:   # a key of two sections asked for together: one would hide the other
            raise ValueError(f"load_params{sections}: {', '.join(sorted(clash))} in more than one section")
        merged.update(values)
    return merged


def run(main):
    """Run a stage's `main()`; bad input ends it with one line on stderr and exit status 1.
    Its outputs land all together at the end, or not at all (`nucseg.io.all_or_nothing`)."""
    try:
        with all_or_nothing():
            main()
    except (NucsegError, UnknownIds) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except FileNotFoundError as exc:   # an input of the stage, run by hand before the stage that makes it
        name = exc.filename if exc.filename is not None else exc
        print(f"error: {name}: no such file; make it with 'dvc repro' (or get it with 'dvc pull')", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:   # a file that cannot be read: one line naming it
        name = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"error: {name}{exc.strerror or exc}; the previous outputs are unchanged", file=sys.stderr)
        sys.exit(1)
