"""Committed chapter outputs are what the site publishes: no build-machine paths, warnings or errors."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:home|root|work|tmp|usr|opt|var|srv|mnt|content|Users|private)/"
                           r"|[A-Za-z]:\\\\|site-packages|\.venv/")
WARNING = re.compile(r"\b\w*Warning\b[:(]|\bwarnings\.warn\b|^\s*warn\(", re.MULTILINE)


def output_texts(path: Path):
    """(cell index, text) of every text output of every code cell, all MIME types but images."""
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                yield index, f"error output: {output.get('ename')}: {output.get('evalue')}"
            texts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items()
                                                 if not k.startswith("image/") and k != "application/json"]
            for text in texts:
                yield index, "".join(text) if isinstance(text, list) else str(text)


def problems(path: Path) -> list[str]:
    found = []
    metadata = json.dumps(json.loads(path.read_text()).get("metadata", {}))
    if match := ABSOLUTE_PATH.search(metadata):
        found.append(f"notebook metadata: absolute path: {metadata[max(0, match.start() - 40):match.end() + 40]!r}")
    for index, text in output_texts(path):
        for kind, pattern in (("absolute path", ABSOLUTE_PATH), ("warning", WARNING)):
            match = pattern.search(text)
            if match:
                found.append(f"cell {index}: {kind}: {text[max(0, match.start() - 40):match.end() + 40]!r}")
        if text.startswith("error output:"):
            found.append(f"cell {index}: {text}")
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_committed_outputs_are_clean(path):
    assert not problems(path), "\n".join(problems(path))


def test_the_check_catches_what_it_should(tmp_path):
    bad = {"cells": [{"cell_type": "code", "source": [], "outputs": [
        {"output_type": "stream", "name": "stderr",
         "text": ["/work/main/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found"]},
        {"output_type": "error", "ename": "NameError", "evalue": "x", "traceback": []},
        {"output_type": "display_data", "data": {"text/plain": "C:\\\\Users\\\\me\\\\book"}, "metadata": {}},
    ]}]}
    bad["metadata"] = {"papermill": {"input_path": "/work/main/chapters/99_bad.ipynb"}}
    path = tmp_path / "99_bad.ipynb"
    path.write_text(json.dumps(bad))
    kinds = " ".join(problems(path))
    assert kinds.count("absolute path") == 3 and "warning" in kinds and "NameError" in kinds
