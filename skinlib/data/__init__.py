"""The data layer: HAM10000 metadata (and its encoding as model inputs), splits, image arrays, near-duplicates,
the ISIC 2018 test set, synthetic data."""

from skinlib.data.dataset import find_masks, load_parts, locate
from skinlib.data.duplicates import DUPLICATE_THRESHOLD, INLIER_THRESHOLD, find_duplicates, similarity_reference
from skinlib.data.encoding import metadata_vectors
from skinlib.data.images import load_images
from skinlib.data.isic2018 import load_isic2018_test
from skinlib.data.metadata import load_metadata
from skinlib.data.splits import Split, duplicate_groups, grouped_folds, split, subset
from skinlib.data.synthetic import make_synthetic

__all__ = ["DUPLICATE_THRESHOLD", "INLIER_THRESHOLD", "Split", "duplicate_groups", "find_duplicates", "find_masks",
           "grouped_folds", "load_images", "load_isic2018_test", "load_metadata", "load_parts", "locate",
           "make_synthetic", "metadata_vectors", "similarity_reference", "split", "subset"]
