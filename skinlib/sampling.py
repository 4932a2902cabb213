"""Class balancing for training on HAM10000 (two-thirds nevi): batches drawn with equal class odds
(``recipe.balance="sampling"``) and scikit-learn's "balanced" loss weights (``"class_weight"``)."""

from __future__ import annotations

import math

import keras
import numpy as np

from skinlib import CLASSES, fusion

NUM_CLASSES = len(CLASSES)


class BalancedBatches(keras.utils.PyDataset):
    """Batches drawn with equal class probability (with replacement), one-hot labels: ``balance="sampling"``.
    With ``metadata`` (N, width) vectors, a batch is ``({"image": x, "metadata": m}, y)``."""

    def __init__(self, x, y, batch_size: int, seed: int = 0, metadata=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.batch_size, self.metadata = x, int(batch_size), metadata
        self.onehot = keras.utils.to_categorical(y, NUM_CLASSES).astype("float32")
        self.rng = np.random.default_rng(seed)
        counts = np.bincount(y, minlength=NUM_CLASSES)
        self.probabilities = 1.0 / counts[y]
        self.probabilities /= self.probabilities.sum()
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        if self.metadata is None:
            return self.x[rows], self.onehot[rows]
        return {fusion.IMAGE_INPUT: self.x[rows], fusion.METADATA_INPUT: self.metadata[rows]}, self.onehot[rows]

    def on_epoch_end(self):
        self.order = self.rng.choice(len(self.x), size=len(self.x), replace=True, p=self.probabilities)


def balanced_class_weight(y) -> dict[int, float]:
    """scikit-learn's "balanced" weights n / (k * count) for the classes present in ``y``."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    return {int(c): float(w) for c, w in zip(present, compute_class_weight("balanced", classes=present, y=y))}
