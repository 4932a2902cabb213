"""leakage.gap on a simulated model that gained nothing from the leak: its leaked-minus-leak-free interval covers 0."""

import numpy as np

from skinlib import CLASSES, leakage

# The study's test set at seed 0, val_size 0.1 (tests/test_splits.py checks 397 / 605): images per class in each
# part, and lesions with two photos (the others have one).
LEAKED = {"nv": 213, "mel": 65, "bkl": 59, "bcc": 32, "akiec": 14, "df": 8, "vasc": 6}  # 54 % nv, 397 images
FREE = {"nv": 465, "bkl": 49, "mel": 37, "bcc": 25, "akiec": 14, "vasc": 8, "df": 7}  # 77 % nv, 605 images
PAIRS = {"leaked": 18, "free": 17}
RECALL = {"akiec": 0.45, "bcc": 0.6, "bkl": 0.55, "df": 0.4, "mel": 0.5, "nv": 0.92, "vasc": 0.75}  # both parts


def part(counts: dict, pairs: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and lesion ids of one part: ``pairs`` lesions of two nevus photos, every other image its own lesion."""
    labels = np.concatenate([np.full(n, CLASSES.index(dx)) for dx, n in counts.items()])
    lesions = np.arange(len(labels))
    lesions[1:2 * pairs:2] = lesions[0:2 * pairs:2]  # the first 2 * pairs images (nevi) in pairs
    return labels, np.array([f"{name}_{k}" for k in lesions], dtype=object)


def test_a_no_leak_model_shows_no_leaked_minus_leak_free_difference():
    (y_leaked, l_leaked), (y_free, l_free) = part(LEAKED, PAIRS["leaked"], "L"), part(FREE, PAIRS["free"], "F")
    y = np.concatenate([y_leaked, y_free])
    lesions = np.concatenate([l_leaked, l_free])
    leaked = np.arange(len(y)) < len(y_leaked)
    assert (leaked.sum(), (~leaked).sum()) == (397, 605)
    recall = np.array([RECALL[dx] for dx in CLASSES])[y]
    _, lesion_codes = np.unique(lesions, return_inverse=True)
    covered = {"balanced_accuracy": 0, "reweighted_accuracy": 0}
    context = []
    simulations = 40
    for seed in range(simulations):
        rng = np.random.default_rng(seed)
        draw = rng.random(lesion_codes.max() + 1)[lesion_codes]  # one draw per lesion: its photos agree
        pred = np.where(draw < recall, y, (y + 1) % 7)
        table = leakage.gap(y, np.eye(7)[pred], leaked, groups=lesions, seed=seed, n_resamples=200)
        row = table.loc["leaked - leak-free"]
        for metric in covered:
            covered[metric] += int(row[f"{metric}_low"] <= 0 <= row[f"{metric}_high"])
        context.append(table.loc["context: whole - leak-free", "accuracy"])
    for metric, count in covered.items():
        assert count >= 0.85 * simulations, f"{metric}: the interval covers 0 in only {count} of {simulations}"
    # the old quantity (whole minus leak-free accuracy) is negative for this model that gained nothing
    assert np.mean(context) < -0.03
