"""Shared fixtures. Keras, matplotlib and skinlib's caches write into a temporary folder, never $HOME."""

import os
import tempfile
from pathlib import Path

# pytest-xdist's workers of one session share it (its caches are safe under concurrent writers, tests/test_images.py),
# so the real data's duplicate search and image arrays are computed once per session, not once per worker
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
_SCRATCH = (Path(tempfile.gettempdir()) / f"skinlib-tests-{_RUN}" if _RUN
            else Path(tempfile.mkdtemp(prefix="skinlib-tests-")))
_SCRATCH.mkdir(exist_ok=True)
for _name, _sub in (("KERAS_HOME", "keras"), ("MPLCONFIGDIR", "matplotlib"), ("SKINLIB_CACHE", "cache")):
    os.environ.setdefault(_name, str(_SCRATCH / _sub))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402

import pytest  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # runner/ (run_all.py's helpers) sits beside run_all.py, outside skinlib
REAL_DATA = Path(os.environ.get("SKINLIB_TEST_DATA") or PROJECT.parent / "shared" / "data" / "ham10000")


def pytest_collection_modifyitems(config, items):
    """Slow tests first (collection order otherwise): under pytest-xdist (``make test`` runs two workers) the long
    notebook runs then start at once, spread over the workers, instead of one of them ending the session alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared real HAM10000 folder (metadata, images_200x150, 239 originals, masks), or skip."""
    if not (REAL_DATA / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real HAM10000 data not found at {REAL_DATA} (set SKINLIB_TEST_DATA to its folder)")
    return REAL_DATA


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A 70-image synthetic HAM10000-shaped dataset (official layout, masks included)."""
    from skinlib.data import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "ham10000", n_images=70, seed=0)
