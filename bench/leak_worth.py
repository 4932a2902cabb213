"""What the study's leak is worth to one notebook: its model trained on the study's split, the same notebook trained
without the test lesions (``--protocol study_deleaked``) and, as the control, trained with as many images removed
at random (``--protocol study_control``: the deleaked split's size and class mix, the leak kept), all scored on
the same test images.

    python run_all.py --protocol study --only 02 --seeds 0,1,2 --out runs/leaky
    python run_all.py --protocol study_deleaked --only 02 --seeds 0,1,2 --out runs/deleaked
    python run_all.py --protocol study_control --only 02 --seeds 0,1,2 --out runs/control
    python bench/leak_worth.py runs/leaky runs/deleaked runs/control --notebook 02_baseline_cnn

Removing the test lesions both takes the leak away and leaves less (and other) training data, so leaky against
deleaked mixes the two. With the control the difference splits in two comparisons:

* leak: control against deleaked (same size and class mix; only the control has the test lesions);
* size: leaky against control (the same leak, minus the images removed at random).

For each seed it loads the exported models, checks that the records describe the same test set, and prints
``ensemble.compare``'s table for each comparison: accuracy and balanced accuracy of each model, the gain with a
paired 95 % interval over lesions, Holm-adjusted p-values, and the clustered McNemar test (Obuchowski 1998 as
simplified by Yang et al. 2010). A last table gives the mean gains over the seeds. Without the control folder it
prints leaky against deleaked only, as before.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from _paired import compared, folders_command, print_mean_gains, read_parameters, seed_folders  # noqa: E402
from skinlib import data, evaluate, export, settings  # noqa: E402

# comparison -> (the model whose gain is reported, the model it is compared with)
COMPARISONS = {"leak (control vs deleaked)": ("control", "deleaked"),
               "size (leaky vs control)": ("leaky", "control"),
               "total (leaky vs deleaked)": ("leaky", "deleaked")}
PROTOCOLS = {"leaky": "study", "deleaked": "study_deleaked", "control": "study_control"}


def check_same_test_set(folders: dict[str, Path], notebook: str) -> dict:
    """The leaky run's parameters, after checking each run's protocol and that all describe one test set."""
    parameters = {name: read_parameters(folder, notebook) for name, folder in folders.items()}
    found = {name: p["protocol"] for name, p in parameters.items()}
    if found != {name: PROTOCOLS[name] for name in folders}:
        expected = " and ".join(PROTOCOLS[name] for name in folders)
        got = ", ".join(f"{protocol} ({folders[name]})" for name, protocol in found.items())
        raise SystemExit(f"expected the protocols {expected}, got {got}")
    same = (*(key for key in settings.SPLIT_KEYS if key not in ("protocol", "merged_duplicates")), "image_size")
    leaky = parameters["leaky"]
    for name, other in parameters.items():
        if any(leaky.get(key) != other.get(key) for key in same):
            raise SystemExit(f"{folders['leaky']} and {folders[name]} differ in {', '.join(same)}: not the same "
                             f"test set")
    return leaky


def main(argv=None) -> int:
    args, meta = folders_command(__doc__, [
        ("leaky", "run_all output folder of --protocol study", False),
        ("deleaked", "run_all output folder of --protocol study_deleaked", False),
        ("control", "run_all output folder of --protocol study_control (optional: splits the difference into leak "
                    "and size)", True)], argv)
    roots = {"leaky": args.leaky, "deleaked": args.deleaked, **({"control": args.control} if args.control else {})}
    comparisons = {name: pair for name, pair in COMPARISONS.items() if set(pair) <= set(roots)}
    gains: dict[str, list] = {name: [] for name in comparisons}
    for seeded in zip(*(seed_folders(root) for root in roots.values())):
        folders = dict(zip(roots, seeded))
        leaky = check_same_test_set(folders, args.notebook)
        test = data.subset(meta, leaky["subset"], seed=leaky["seed"])
        test = data.split(test, protocol="study", seed=leaky["seed"], val_size=leaky["val_size"]).test
        images_test = data.load_images(test, size=tuple(leaky["image_size"]))
        probas = {name: evaluate.predict(export.load(folder / "models" / f"{args.notebook}.keras"), images_test)
                  for name, folder in folders.items()}
        for comparison, (better, other) in comparisons.items():
            table = compared(test, {better: probas[better], other: probas[other]}, better, leaky["seed"],
                             f"; {comparison}: gain of {better} over {other}")
            gains[comparison].append(table.loc[other])
    for comparison, rows in gains.items():
        print_mean_gains(rows, f"{comparison}")
    if "control" not in roots:
        print("\n(leaky vs deleaked mixes the leak with the images removed; give the study_control run as a third "
              "folder to separate them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
