"""The Colab path, end to end, on this machine: `python -m tests.colab_check [--keep]` (`make colab-check`).

1. A clean Python 3.12 virtual environment in a temporary directory, holding what Colab already
   has (COLAB_PACKAGES: a CUDA torch from PyPI with its nvidia-* libraries, numpy, pandas, ...).
2. The "remote": a clone of this repository's committed files, reached through a file:// URL.
   Until the new setup cell and the requirements.txt layout are committed, this clone gets them
   (see `integrate`); after that, this step changes nothing.
Then, each stage in a fresh kernel of that environment (a new runtime), working directory a
temporary folder where `lib` is not importable, FIELD_GUIDE_REPO pointing at the remote:
3. A, a fresh runtime: SETUP_CELL clones and installs, and must not ask for a restart.
4. A', a reader who imported Colab's own transformers first: the cell upgrades it and must ask
   for a restart.
5. B, after that restart: chapter 01 of the clone, executed by papermill (model_name='smollm2-135m',
   device='cpu'). Its setup cell must reuse the clone and not ask for a restart; the chapter must
   run to its claims table, which is printed.

Everything is written under one temporary directory, removed at the end unless --keep. Needs
papermill in the Python that runs it (the book's .venv) and PyPI. PYTHON312 names the Python
3.12 interpreter (default: pyenv's 3.12.1 through `python3.12`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.colab_setup_cell import MARKER, RESTART, SETUP_CELL, kept_packages, set_setup_cell

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "01_logit_lens"
PARAMETERS = {"model_name": "smollm2-135m", "device": "cpu"}
# Stand-ins for what Colab ships (its Python 3.12 image, late 2025). torch comes from PyPI: a
# CUDA build, with about 4.5 GB of nvidia-* wheels that `import torch` needs even without a GPU
# (PyPI has no CPU-only torch for Linux). transformers 5 needs torch >= 2.6.
COLAB_PACKAGES = os.environ.get("COLAB_PACKAGES", " ".join([
    "torch==2.9.1", "numpy==2.0.2", "pandas==2.2.2", "matplotlib==3.10.0", "scipy==1.16.3",
    "scikit-learn==1.6.1", "seaborn==0.13.2", "tqdm==4.67.1", "psutil==5.9.5", "requests",
    "transformers==4.57.1", "ipykernel==6.17.1", "ipython==7.34.0", "ipywidgets==7.7.1",
])).split()
COLAB_TRANSFORMERS = next(p for p in COLAB_PACKAGES if p.startswith("transformers=="))
# The lines of requirements.txt that go below MARKER (readers need none of them).
BUILD_AND_TEST_TOOLS = ["beartype", "papermill", "ipykernel", "nbval", "pytest", "ruff", "nbqa",
                        "setuptools", "jupyter-book", "sphinx-exercise", "sphinxcontrib-bibtex"]
CLEAN = '''\
import importlib.util

assert importlib.util.find_spec("lib") is None, "lib is importable: this is not a clean runtime"'''
READER_IMPORTED_TRANSFORMERS = f'''\
# A reader who imported Colab's own transformers before running the setup cell.
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{COLAB_TRANSFORMERS}"], check=True)
import transformers

print("imported before the setup cell: transformers", transformers.__version__)'''


def sh(*command, log: Path | None = None) -> None:
    """Run a command; on failure show the end of its output and stop."""
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if log:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))[:300]}\n{(done.stdout + done.stderr)[-4000:]}")


def python312() -> list[str]:
    """The Python 3.12 to build the environment with."""
    if os.environ.get("PYTHON312"):
        return [os.environ["PYTHON312"]]
    return ["env", "PYENV_VERSION=3.12.1", "python3.12"]


def versions(python: Path) -> dict[str, str]:
    """Installed distributions of an environment, name -> version."""
    code = ("import json, importlib.metadata as m; print(json.dumps({(d.metadata['Name'] or '').lower():"
            " d.version for d in m.distributions()}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


def make_colab_env(tmp: Path) -> Path:
    """The clean Python 3.12 environment with the Colab stand-ins, and a kernel spec for it."""
    venv = tmp / "colab-python"
    sh(*python312(), "-m", "venv", venv)
    python = venv / "bin" / "python"
    sh(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *COLAB_PACKAGES,
       log=tmp / "colab-packages.log")
    kernel = tmp / "jupyter" / "kernels" / "colab-check"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in (Python 3.12)", "language": "python"}))
    return python


def split_requirements(text: str) -> str:
    """requirements.txt with the build and test tools moved below MARKER."""
    lines = text.splitlines()
    tools = [line for line in lines if line.split("==")[0] in BUILD_AND_TEST_TOOLS]
    rest = [line for line in lines if line not in tools]
    return "\n".join(rest + [f"{MARKER} (make, CI): the Colab setup cell reads no further."] + tools) + "\n"


def integrate(remote: Path) -> list[str]:
    """Give the remote the new setup cell and requirements layout if its commit lacks them."""
    changed = [nb.name for nb in sorted((remote / "chapters").glob("[0-9][0-9]_*.ipynb"))
               if set_setup_cell(nb)]
    requirements = remote / "requirements.txt"
    if MARKER not in requirements.read_text():
        requirements.write_text(split_requirements(requirements.read_text()))
        changed.append("requirements.txt")
    if changed:
        sh("git", "-C", remote, "-c", "user.name=colab-check", "-c", "user.email=colab-check@localhost",
           "commit", "-q", "-am", "colab check: integrate the setup cell")
    return changed


def kernel_environment(tmp: Path, remote: Path) -> None:
    """Environment the kernels inherit: the remote's URL, caches under tmp, nothing of this repo."""
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "FIELD_GUIDE_RESTART"):
        os.environ.pop(name, None)
    os.environ.update(
        FIELD_GUIDE_REPO=remote.as_uri(), FIELD_GUIDE_CACHE=str(tmp / "model-cache"),
        JUPYTER_PATH=str(tmp / "jupyter"), HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1",
        MPLCONFIGDIR=str(tmp / "matplotlib"), PYDEVD_DISABLE_FILE_VALIDATION="1",
    )


def execute(source: Path, output: Path, cwd: Path, **parameters) -> str | None:
    """Execute a notebook with papermill in a fresh kernel; returns the error line, or None."""
    import papermill as pm

    try:
        pm.execute_notebook(str(source), str(output), parameters=parameters, kernel_name="colab-check",
                            cwd=str(cwd), progress_bar=False, log_output=False)
        return None
    except pm.PapermillExecutionError as error:
        return f"{error.ename}: {error.evalue}"


def run_cells(name: str, sources: list[str], out: Path, cwd: Path) -> tuple[str | None, str]:
    """Execute a small notebook of these cells; returns (error line or None, the setup cell's output)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "colab-check", "display_name": "colab-check", "language": "python"}
    nbformat.write(nb, out / f"{name}-input.ipynb")
    error = execute(out / f"{name}-input.ipynb", out / f"{name}.ipynb", cwd)
    cells = json.loads((out / f"{name}.ipynb").read_text())["cells"]
    for cell in cells[:-1]:
        if cell_output(cell).strip():
            print(indent(cell_output(cell)))
    return error, setup_output(out / f"{name}.ipynb")


def cell_output(cell: dict) -> str:
    """What a cell showed: its streams, results and error lines."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append("".join(out["text"]))
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append("".join(out["data"].get("text/plain", "")) + "\n")
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}\n")
    return "".join(parts)


def setup_output(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return next((cell_output(c) for c in cells if "".join(c["source"]) == SETUP_CELL), "(no setup cell)")


def indent(text: str) -> str:
    return "\n".join("      " + line for line in text.rstrip().splitlines())


def stage_a(out: Path, cwd: Path, failures: list[str]) -> None:
    """A fresh runtime: clone and install, with no restart."""
    error, output = run_cells("stage-a", [CLEAN, SETUP_CELL], out, cwd)
    print("    setup cell output:\n" + indent(output))
    if error:
        failures.append(f"stage A (fresh runtime): {error}")


def stage_a2(out: Path, cwd: Path, failures: list[str]) -> None:
    """A runtime that had imported Colab's transformers: the cell must ask for a restart."""
    error, output = run_cells("stage-a2", [CLEAN, READER_IMPORTED_TRANSFORMERS, SETUP_CELL], out, cwd)
    print("    setup cell output:\n" + indent(output))
    if not (error and RESTART in error):
        failures.append(f"stage A' (transformers imported): expected the restart request, got {error}")


def stage_b(out: Path, cwd: Path, failures: list[str]) -> None:
    """After the restart: the chapter runs from the clone to its claims table."""
    chapter = cwd / "llm-field-guide" / "chapters" / f"{CHAPTER}.ipynb"
    output = out / f"{CHAPTER}.ipynb"
    error = execute(chapter, output, cwd, **PARAMETERS)
    if not output.exists():
        failures.append(f"{CHAPTER} did not start: {error}")
        return
    setup = setup_output(output)
    print("    setup cell output:\n" + indent(setup))
    if RESTART in setup:
        failures.append(f"{CHAPTER}: the setup cell asked for a restart again after one")
    cells = json.loads(output.read_text())["cells"]
    table = [c for c in cells if "claims_table(" in "".join(c["source"]) and c.get("outputs")]
    if table:
        print(f"    {CHAPTER} claims table:\n" + indent(cell_output(table[-1])))
    if error:
        failed = next((c for c in cells if any(o["output_type"] == "error" for o in c.get("outputs", []))), None)
        where = "".join(failed["source"])[:300] if failed else "?"
        failures.append(f"{CHAPTER} failed: {error}\n    in the cell starting:\n{indent(where)}")
    elif not table:
        failures.append(f"{CHAPTER}: no claims table found")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="colab-check-"))
    print(f"working in {tmp}", flush=True)
    timings, failures = {}, []

    @contextmanager
    def step(name):
        print(f"-- {name}", flush=True)
        begin = time.perf_counter()
        timings[name] = None
        yield
        timings[name] = time.perf_counter() - begin

    try:
        with step("1. Python 3.12 env with Colab's packages"):
            python = make_colab_env(tmp)
            colab = versions(python)
            print("   ", ", ".join(f"{n} {colab.get(n)}" for n in kept_packages() + ["transformers", "ipykernel"]))
        with step("2. remote: clone of the committed repository"):
            remote = tmp / "remote"
            sh("git", "clone", "-q", ROOT.as_uri(), remote)
            changed = integrate(remote)
            if changed:
                print("    not committed here yet, so given to the remote only:", ", ".join(changed))
        kernel_environment(tmp, remote)
        content, out = tmp / "content", tmp / "out"  # content: Colab's working directory
        content.mkdir()
        out.mkdir()
        with step("3. stage A: fresh runtime, setup cell (clone + install)"):
            stage_a(out, content, failures)
        with step("4. stage A': transformers imported first, setup cell (restart expected)"):
            stage_a2(out, content, failures)
        with step(f"5. stage B: after the restart, {CHAPTER} (papermill)"):
            stage_b(out, content, failures)
        after = versions(python)
        for name in kept_packages():
            if colab.get(name) != after.get(name):
                failures.append(f"{name} was replaced: {colab.get(name)} -> {after.get(name)}")
        print("\npackages the setup cell changed:", ", ".join(
            f"{n} {colab[n]} -> {after[n]}" for n in sorted(colab) if n in after and colab[n] != after[n]) or "none")
    finally:
        print("\nwall time (s):")
        for name, seconds in timings.items():
            print(f"  {'unfinished' if seconds is None else f'{seconds:.1f}':>10}  {name}")
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + ("FAILED:\n  " + "\n  ".join(failures) if failures else "colab check passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
