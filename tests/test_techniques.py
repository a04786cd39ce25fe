"""The technique index (techniques.md) names every public lib function and class, and every technique's
functions say in their docstring which chapter teaches them."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import lib

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "techniques.md"


def public_names() -> set[str]:
    """`module.name` of every public function and class defined in a lib module."""
    names = set()
    for info in pkgutil.iter_modules(lib.__path__):
        module = importlib.import_module(f"lib.{info.name}")
        for name, obj in vars(module).items():
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not name.startswith("_") \
                    and obj.__module__ == module.__name__:
                names.add(f"{info.name}.{name}")
    return names


def technique_rows() -> list[tuple[str, str, list[str]]]:
    """(technique, chapter number, [module.name, ...]) for each row of the techniques table."""
    text = PAGE.read_text().split("## Foundations", 1)[0]
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and (match := re.search(r"chapters/(\d\d)_", cells[1])):
            rows.append((cells[0], match.group(1), re.findall(r"`(\w+\.\w+)`", cells[2])))
    return rows


def test_every_public_lib_name_is_in_the_index():
    listed = set(re.findall(r"`(\w+\.\w+)`", PAGE.read_text()))
    missing = sorted(public_names() - listed)
    assert not missing, f"add these to techniques.md (a technique's row, or Foundations): {missing}"
    unknown = sorted(n for n in listed - public_names() if n.split(".")[0] in {i.name for i in pkgutil.iter_modules(lib.__path__)})
    assert not unknown, f"techniques.md names what lib does not define: {unknown}"


def test_each_technique_row_links_its_chapter_and_docstrings_say_so():
    rows = technique_rows()
    assert len(rows) >= 8, "logit lens, patching, attribution patching, ablation, attention scores, probes, directions, steering"
    for technique, chapter, names in rows:
        assert names, f"{technique}: no lib function listed"
        assert list((ROOT / "chapters").glob(f"{chapter}_*.ipynb")), f"{technique}: no chapter {chapter}"
        for name in names:
            module, attr = name.split(".")
            doc = inspect.getdoc(getattr(importlib.import_module(f"lib.{module}"), attr)) or ""
            module_doc = inspect.getdoc(importlib.import_module(f"lib.{module}")) or ""
            assert f"Taught in chapter {chapter}" in doc + module_doc, \
                f"lib.{name}: its docstring (or its module's) should say 'Taught in chapter {chapter}'"
