"""Where skinlib looks for data and keeps its caches; each overridable by an environment variable."""

import os
from pathlib import Path

DATA_ENV = "SKINLIB_DATA"
CACHE_ENV = "SKINLIB_CACHE"
DEFAULT_DATA = Path("data") / "ham10000"


def data_root() -> Path:
    """The HAM10000 folder: ``$SKINLIB_DATA``, else ``./data/ham10000``."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)


def cache_dir() -> Path:
    """Folder for derived caches (resized image arrays): ``$SKINLIB_CACHE``, else ``~/.cache/skinlib``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skinlib"
