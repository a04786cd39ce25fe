"""references.bib parses, and every paper a chapter cites is in it (the site's build fails otherwise)."""

import json
import re
from pathlib import Path

from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parent.parent


def test_every_citation_is_in_the_bibliography():
    keys = set(parse_file(str(ROOT / "references.bib")).entries)
    cited = set()
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
        for group in re.findall(r"\{footcite[pt]?\}`([^`]+)`", text):
            cited.update(k.strip() for k in group.split(","))
    assert cited and not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"
