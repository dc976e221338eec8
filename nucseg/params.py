"""Reading a stage's section of params.yaml, and running stage scripts with one-line errors."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .io import NucsegError


def load_params(section, path="params.yaml"):
    """The `section` of params.yaml merged over its `base` section (the shared seed and size)."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    if section not in params:
        raise NucsegError(f"{path}: no '{section}' section; add it (see the README's params table)")
    return {**params.get("base", {}), **(params[section] or {})}


def run(main):
    """Run a stage's `main()`; bad input ends it with one line on stderr and exit status 1."""
    try:
        main()
    except (NucsegError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
