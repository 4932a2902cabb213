"""The committed notebooks: names, clean state, one parameters cell, the study's steps as short calls to skinlib."""

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

import runner
from skinlib import study

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [step.notebook for step in study.STEPS]
MAX_CELL_LINES = 8  # logic lives in skinlib: a notebook cell is a few calls
MAX_LINE = 120


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def code_without_magics(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def test_the_nine_notebooks_and_nothing_else():
    assert NAMES == ["01_eda", "02_baseline_cnn", "03_finetune_vgg16", "04_finetune_inception_v3",
                     "05_finetune_inception_resnet_v2", "06_finetune_densenet201", "07_retrain_inception_v3",
                     "08_retrain_densenet201", "09_ensemble"]
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    notebook = load(name)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {index} has outputs: strip them before committing"
            assert cell.execution_count is None, f"{name} cell {index} has an execution count"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NAMES)
def test_markdown_intro_then_one_parameters_cell(name):
    cells = load(name).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(f"# {name[:2]} ·")
    first_code = next(cell for cell in cells if cell.cell_type == "code")
    tagged = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert tagged == [first_code], f"{name}: exactly one cell tagged `parameters`, the first code cell"


@pytest.mark.parametrize("name", NAMES)
def test_parameters_default_to_the_study_and_every_one_is_explained(name):
    """Defaults live in the parameters cell only; None means the study's value (from skinlib.study)."""
    found = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert all(info["help"] for info in found.values()), f"{name}: every parameter has a comment"
    defaults = runner.notebook_parameters(NOTEBOOKS / f"{name}.ipynb")
    assert defaults["data_dir"] is None and defaults["out_dir"] == "../outputs/manual"
    if study.get(name).model:
        assert {k: defaults[k] for k in ("protocol", "recipe", "image_size", "epochs", "batch_size", "val_size")} == {
            "protocol": "study", "recipe": "study", "image_size": None, "epochs": None, "batch_size": None,
            "val_size": None}
    assert set(runner.profile("smoke")[name]) <= set(defaults)


def test_ensemble_declares_its_members():
    parameters = runner.notebook_parameters(NOTEBOOKS / "09_ensemble.ipynb")
    assert parameters["members"] == list(study.get("09").members) == ["07", "08"]


@pytest.mark.parametrize("name", NAMES)
def test_cells_are_short_calls_into_skinlib(name):
    """No function or class definitions, no long cells, imports only from skinlib."""
    cells = [cell for cell in load(name).cells if cell.cell_type == "code"][1:]  # after the parameters
    for cell in cells:
        source = code_without_magics(cell.source)
        tree = ast.parse(source)
        lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        assert len(lines) <= MAX_CELL_LINES, f"{name}: a long cell belongs in skinlib:\n{cell.source}"
        for node in ast.walk(tree):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), (
                f"{name}: define functions in skinlib, not in the notebook:\n{cell.source}")
            if isinstance(node, ast.ImportFrom):
                assert node.module == "skinlib", f"{name}: imports only from skinlib, got {node.module}"
            assert not isinstance(node, ast.Import), f"{name}: use `from skinlib import ...`"


@pytest.mark.parametrize("name", NAMES)
def test_reads_like_a_paper(name):
    """Sections in markdown between the code, and the study's reported numbers in the intro."""
    cells = load(name).cells
    assert sum(cell.cell_type == "markdown" and cell.source.startswith("## ") for cell in cells) >= 4
    step = study.get(name)
    if step.test_accuracy is not None:
        assert f"{step.test_accuracy:g} %" in cells[0].source


@pytest.mark.parametrize("name", [n for n in NAMES if study.get(n).model])
def test_training_notebooks_show_each_step_of_the_study(name):
    """Settings resolved once from its own row; split, load, build, then set_trainable and fit for each stage of the
    study's row, each stage named once (set_trainable and the fit after it get the same stage), evaluate, explain,
    save."""
    step = study.get(name)
    sources = "\n".join(cell.source for cell in load(name).cells if cell.cell_type == "code")
    assert f'settings.resolve("{step.number}", globals())' in sources  # its own row, nothing copied from another
    for call in ("data.split(", "data.load_parts(", "models.build(", "augment.pipeline(", "evaluate.reports(",
                 "gradcam.gradcam(", "export.export(", "outputs.write_record(", "outputs.record(run,"):
        assert call in sources, f"{name} does not show {call}"
    calls = [node for node in ast.walk(ast.parse(code_without_magics(sources))) if isinstance(node, ast.Call)]
    calls.sort(key=lambda node: (node.lineno, node.col_offset))
    named = [(ast.unparse(node.func), node.args) for node in calls
             if ast.unparse(node.func) in ("models.set_trainable", "train.fit")]
    fits = [args[3].id for func, args in named if func == "train.fit"]
    assert len(fits) == len(step.stages)
    changes = sum(1 for stage in step.stages if not stage.continues)
    assert sum(func == "models.set_trainable" for func, _ in named) == changes
    for (func, args), (after, after_args) in zip(named, named[1:]):
        if func == "models.set_trainable":  # the same stage object, named once
            assert after == "train.fit" and args[1].id == after_args[3].id, f"{name}: set_trainable and fit disagree"
    assert "run.stages" in sources and "bn=" not in sources.split("run.stages")[1]


def _statements(name: str) -> list[str]:
    """The code statements of a notebook, as written (comments dropped), one string each."""
    found = []
    for cell in load(name).cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        source = code_without_magics(cell.source)
        lines = source.splitlines()
        for node in ast.parse(source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                continue  # one import line per notebook, wrapped
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
            found.append("\n".join(line.split("  #")[0].rstrip() for line in text.splitlines()))
    return found


def test_no_multi_line_block_repeats_across_the_training_notebooks():
    """Plumbing lives in skinlib and the settings object: a statement of more than one line, or a compound one
    (if, for, with), written out in five or more of 02-08 would be logic copied between notebooks. One-line study
    calls may repeat."""
    training = [n for n in NAMES if study.get(n).model]
    counts: dict[str, set[str]] = {}
    for name in training:
        for statement in _statements(name):
            counts.setdefault(statement, set()).add(name)
    repeated = [s for s, names in counts.items() if len(names) >= 5 and ("\n" in s or s.endswith(":")
                                                                          or s.split()[0] in ("if", "for", "with"))]
    assert not repeated, "multi-line blocks repeated in five or more notebooks:\n\n" + "\n\n".join(repeated)


@pytest.mark.parametrize("name", NAMES)
def test_code_lines_fit_the_page(name):
    long = [line for cell in load(name).cells if cell.cell_type == "code" for line in cell.source.splitlines()
            if len(line) > MAX_LINE]
    assert not long, f"{name}: lines over {MAX_LINE} characters:\n" + "\n".join(long)
