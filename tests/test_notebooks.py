"""The committed notebooks: names, clean state, one parameters cell, short cells calling skinlib."""

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

from skinlib import experiment, runner, study

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [step.notebook for step in study.STEPS]
MAX_CELL_LINES = 6  # logic lives in skinlib: a notebook cell is a few calls


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
def test_parameter_defaults_are_the_full_profile(name):
    """The notebooks' defaults are the study's recipe, as in run_all's profile table."""
    defaults = runner.notebook_parameters(NOTEBOOKS / f"{name}.ipynb")
    assert defaults == runner.profile("full")[name]
    assert set(defaults) == set(runner.profile("smoke")[name])
    assert all(parameter in runner.PARAMETER_HELP for parameter in defaults)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("01_eda", "09_ensemble")])
def test_training_notebooks_declare_every_experiment_parameter(name):
    assert set(papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))) == set(experiment.PARAMETERS)


def test_ensemble_declares_its_parameters_and_members():
    parameters = runner.notebook_parameters(NOTEBOOKS / "09_ensemble.ipynb")
    assert set(parameters) == set(experiment.ENSEMBLE_PARAMETERS)
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


def test_training_notebooks_run_their_own_step():
    """Each of 02-08 builds the experiment of its own step (its number), nothing copied from another."""
    for step in study.STEPS:
        if step.model is None:
            continue
        sources = "\n".join(cell.source for cell in load(step.notebook).cells if cell.cell_type == "code")
        assert f'Experiment.from_parameters("{step.number}", globals())' in sources
