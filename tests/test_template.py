"""chapters/_template.ipynb, the skeleton a new chapter starts from, runs and passes the chapter tests."""

import json
from pathlib import Path

import pytest

from tests.colab_setup_cell import SETUP_CELL
from tests.test_chapters import assert_chapter_shape
from tests.tiny import save_tiny_model

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "chapters" / "_template.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The template executed by papermill on a tiny random Llama, as the runner executes chapters."""
    import papermill as pm

    from lib.runner import kernel_config

    tmp = tmp_path_factory.mktemp("template")
    model_dir = save_tiny_model("llama", tmp / "model")
    out = tmp / "executed.ipynb"
    mp = pytest.MonkeyPatch()
    mp.setenv("FIELD_GUIDE_RECORDS", str(tmp / "records"))  # the kernel inherits it: no record lands in _build
    pm.execute_notebook(str(TEMPLATE), str(out), parameters={"model_name": str(model_dir), "n_prompts": 8},
                        kernel_name="python3", cwd=str(ROOT / "chapters"), progress_bar=False,
                        config=kernel_config())
    mp.undo()
    return json.loads(out.read_text())


def test_template_is_committed_without_outputs():
    cells = json.loads(TEMPLATE.read_text())["cells"]
    assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), "commit the template clean"


def test_template_runs_and_passes_the_chapter_tests(executed):
    cells = executed["cells"]
    assert_chapter_shape(cells, "_template")
    setup = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]) == SETUP_CELL]
    assert len(setup) == 1, "the template carries the Colab setup cell, identical to the chapters'"
    table = [c for c in cells if "".join(c["source"]).startswith("# NBVAL_CHECK_OUTPUT")][0]
    text = "".join(table["outputs"][0]["data"]["text/plain"])
    assert "ours [95% CI]:" in text and "null:" in text and "bar:" in text and "verdict:" in text
