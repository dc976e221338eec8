"""Reading a stage's section of params.yaml, and running stage scripts with one-line errors."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .io import NucsegError


def load_params(*sections, path="params.yaml", with_base=True):
    """The `sections` of params.yaml merged, in order, over its `base` section (seed and size)."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    merged = dict(params.get("base", {})) if with_base else {}
    for section in sections:
        if section not in params:
            raise NucsegError(f"{path}: no '{section}' section; add it (see params.yaml in the repository)")
        merged.update(params[section] or {})
    return merged


def run(main):
    """Run a stage's `main()`; bad input ends it with one line on stderr and exit status 1."""
    try:
        main()
    except (NucsegError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
