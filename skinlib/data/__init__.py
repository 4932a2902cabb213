"""The data layer: HAM10000 metadata, splits, image arrays, the ISIC 2018 test set, synthetic data."""

from skinlib.data.dataset import find_masks, load_parts, locate
from skinlib.data.images import load_images
from skinlib.data.isic2018 import load_isic2018_test
from skinlib.data.metadata import load_metadata
from skinlib.data.splits import Split, split, subset
from skinlib.data.synthetic import make_synthetic

__all__ = ["Split", "find_masks", "load_images", "load_isic2018_test", "load_metadata", "load_parts",
           "locate", "make_synthetic", "split", "subset"]
