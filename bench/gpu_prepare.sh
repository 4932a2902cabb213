#!/usr/bin/env bash
# Prepare, on a machine with PyPI, what bench/gpu_session.sh needs on a GPU machine with no internet and no
# TensorFlow (Python 3.12, JAX, PyTorch, timm): the wheels skinlib needs there (.whl/), and a class-stratified
# subset of the 200x150 images (.gpu_data/ham10000/), both ignored by git (.git/info/exclude), within the 64 MiB
# that travel. Usage: bash bench/gpu_prepare.sh [path to ham10000] [images in the subset, default 6000]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ham10000}
N=${2:-6000}
PY=${PYTHON:-.venv/bin/python}
for path in /.whl/ /.gpu_data/; do grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude; done
rm -rf .whl && mkdir -p .whl
# keras (the project's pin) and what it needs beyond the machine's packages; papermill and its kernel stack.
# Left out on purpose: debugpy and jedi (5 MB each; ipykernel and IPython run without them).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  keras==3.15.1 namex optree papermill==2.7.0 nbformat==5.11.1 nbclient==0.11.0 ipykernel==7.4.0 jupyter_client \
  jupyter_core traitlets tenacity entrypoints pyzmq tornado ipython comm matplotlib-inline nest-asyncio2 \
  fastjsonschema jsonschema referencing rpds-py jsonschema-specifications platformdirs decorator parso pexpect \
  ptyprocess prompt_toolkit wcwidth stack_data executing asttokens pure_eval ipython_pygments_lexers ansicolors \
  2>&1 | grep -v "^WARNING: Location" || true
rm -rf .gpu_data && mkdir -p .gpu_data/ham10000/images_200x150
"$PY" - "$DATA" "$N" <<'PY'
import shutil, sys
from pathlib import Path
from skinlib import data
source, n = Path(sys.argv[1]), int(sys.argv[2])
meta = data.subset(data.load_metadata(source, images="images_200x150"), n, seed=0)
target = Path(".gpu_data/ham10000")
for name in ("HAM10000_metadata.csv", "HAM10000_metadata_dataverse.csv"):
    rows = (source / name).read_text().splitlines()
    keep = set(meta["image_id"])
    header, body = rows[0], rows[1:]
    column = header.split(",").index("image_id")
    (target / name).write_text("\n".join([header] + [r for r in body if r.split(",")[column] in keep]) + "\n")
for path in meta["path"]:
    shutil.copy2(path, target / "images_200x150" / Path(path).name)
print(f"{len(meta)} images ({meta['dx'].value_counts().to_dict()}) in {target}")
PY
du -sh .whl .gpu_data
total=$(du -sm .whl .gpu_data | awk '{s+=$1} END {print s}')
repo=$(git ls-files -z | xargs -0 du -cm | tail -1 | awk '{print $1}')
echo "wheels + data: ${total} MiB, tracked files: ${repo} MiB (at most 64 MiB travel)"
