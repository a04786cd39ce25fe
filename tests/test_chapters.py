"""Every chapter follows the template: parameters cell, one setup call, exercise, claims table, references."""

import ast
import json
import re
from pathlib import Path

import pytest

CHAPTERS = sorted((Path(__file__).resolve().parent.parent / "chapters").glob("[0-9][0-9]_*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_follows_the_template(path):
    assert_chapter_shape(cells(path), path.stem)


def assert_chapter_shape(all_cells: list[dict], stem: str) -> None:
    """The chapter template (CONTRIBUTING.md), as the tests enforce it."""
    code = [c for c in all_cells if c["cell_type"] == "code"]
    text = "\n".join(source(c) for c in all_cells if c["cell_type"] == "markdown")
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    tree = ast.parse(source(params[0]))
    assert all(isinstance(n, ast.Assign) for n in tree.body), "the parameters cell holds assignments only"
    for n in tree.body:
        ast.literal_eval(n.value)  # plain literals (numbers, strings, lists), nothing computed
    names = {n.targets[0].id for n in tree.body}
    assert {"model_name", "device", "seed"} <= names
    assert sum(f'start("{stem}"' in source(c) for c in code) == 1, "one setup call naming the chapter"
    toy = any(re.search(r"\bstart\([^)]*\btoy\s*=\s*True", source(c)) for c in code)
    if not toy:  # a chapter that loads a language model lets a GPU reader pick its precision
        assert "dtype" in names and any("dtype=dtype" in source(c) for c in code), \
            "a dtype parameter passed to start(..., dtype=dtype)"
    checked = [c for c in code if source(c).startswith("# NBVAL_CHECK_OUTPUT")]
    assert len(checked) == 1 and "ch.claims_table(items=" in source(checked[0]), \
        "one checked claims cell, with the items the claims were measured on (for the provenance stamp)"
    assert "{exercise}" in text and "{solution-start}" in text, "an exercise with a hidden solution"
    assert "{footbibliography}" in text and "{footcite}" in text, "cites papers and ends with references"
    assert "## Departures from the paper" in text, "a departures table before the claims"
    assert all(c.get("outputs") is not None for c in code) and any(c.get("outputs") for c in code), \
        "committed with outputs"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))


def test_every_chapter_is_in_the_table_of_contents():
    root = Path(__file__).resolve().parent.parent
    toc = (root / "_toc.yml").read_text()
    for path in CHAPTERS:
        assert f"file: chapters/{path.stem}" in toc, f"{path.name} missing from _toc.yml"


WEIGHT_OR_CONFIG = re.compile(r"\.(weight|bias|config)\b")


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_chapter_reads_weights_or_config_itself(path):
    """Weight layouts and config names differ by family (GPT-2 stores [in, out]): chapters ask lib.arch."""
    cells = json.loads(path.read_text())["cells"]
    found = [line.strip() for c in cells if c["cell_type"] == "code" and not source(c).startswith("# Colab")
             for line in source(c).splitlines() if WEIGHT_OR_CONFIG.search(line.split("#")[0])]
    assert not found, f"use Arch's accessors (W_O, W_U, W_out, norm_eps, ...) instead of: {found}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path, caplog):
    # papermill skips a parameter line it cannot parse (a warning, e.g. for "(= ...)" in its comment),
    # and then `papermill --help-notebook` and its type checks miss that parameter.
    import papermill

    with caplog.at_level("WARNING"):
        names = list(papermill.inspect_notebook(str(path)))
    assert not [r.getMessage() for r in caplog.records if "parse" in r.getMessage()]
    assert {"model_name", "device", "seed"} <= set(names)
