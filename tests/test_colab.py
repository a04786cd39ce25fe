"""The Colab setup cell: identical in every chapter, pointing at the configured repository."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.colab_setup_cell import MARKER, RESTART, SETUP_CELL, repository_url

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def configured_url() -> str:
    """`repository: url:` in _config.yml."""
    lines = (ROOT / "_config.yml").read_text().splitlines()
    return next(line.split("url:", 1)[1].strip() for line in lines if line.strip().startswith("url:"))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_the_setup_cell_before_its_parameters(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    setup = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "".join(c["source"]) == SETUP_CELL]
    params = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(setup) == 1, f"{notebook.name}: {len(setup)} cells equal tests/colab_setup_cell.SETUP_CELL"
    assert params and setup[0] < params[0], f"{notebook.name}: the setup cell must come before `parameters`"


def test_setup_cell_points_at_the_configured_repository():
    assert repository_url() == configured_url()


def test_setup_cell_reads_requirements_down_to_the_marker():
    assert MARKER in SETUP_CELL and RESTART in SETUP_CELL
    runtime, found, tools = (ROOT / "requirements.txt").read_text().partition(MARKER)
    assert found, f"requirements.txt needs a line starting {MARKER!r}"
    names = {line.split("==")[0] for line in runtime.splitlines() if line and not line.startswith("#")}
    assert {"torch", "numpy", "pandas", "transformers", "nnsight"} <= names
    assert not names & {"pytest", "nbval", "ruff", "nbqa", "papermill", "ipykernel", "jupyter-book"}


def test_setup_cell_does_nothing_where_lib_is_importable(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the setup cell ran a command although `lib` is importable")

    monkeypatch.setattr(subprocess, "run", refuse)
    cwd, path = os.getcwd(), list(sys.path)
    exec(compile(SETUP_CELL, "setup-cell", "exec"), {})
    assert os.getcwd() == cwd and sys.path == path


@pytest.mark.skipif(os.environ.get("FIELD_GUIDE_COLAB_CHECK") != "1",
                    reason="slow (several minutes, needs PyPI): set FIELD_GUIDE_COLAB_CHECK=1")
def test_colab_path_end_to_end():
    done = subprocess.run([sys.executable, "-m", "tests.colab_check"], cwd=ROOT, timeout=3600)
    assert done.returncode == 0, "tests/colab_check.py failed: see its output above"
