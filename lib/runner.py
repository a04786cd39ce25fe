"""Execute chapters with papermill: `python -m lib.runner [--model M] [--device D] [--chapters 01,02] [k=v ...]`.

Without --model, each chapter runs on its own default model and its outputs are written back into
chapters/ (the committed book). With --model, runs go to _build/runs/<model>/ and the chapters stay
untouched. A failing chapter is reported with its failing cell; the others still run. Overrides are
checked against every selected chapter's parameters cell (name and type) before any chapter runs.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

from lib.claims import records_dir

RESULTS = Path(__file__).resolve().parent.parent / "results"
RECORDED_PARAMETERS = {"model_name", "device"}  # runs with only these set are the book's committed records

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "True or False", list: "a list"}


def parse_overrides(pairs: list[str]) -> dict:
    """key=value pairs; values are Python literals when they parse, else strings."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{pair}: not a parameter override; expected key=value, e.g. n_prompts=8")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def select_chapters(spec: str | None) -> list[Path]:
    """All chapters/NN_*.ipynb, or those whose number or name is in the comma-separated `spec`."""
    found = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if not spec:
        return found
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    named = lambda p, w: p.stem == w or p.stem.startswith(f"{w}_")  # noqa: E731  ("01" or "01_logit_lens")
    unknown = [w for w in wanted if not any(named(p, w) for p in found)]
    if unknown or not wanted:
        raise SystemExit(f"--chapters: no chapter {', '.join(unknown) or repr(spec)}; "
                         f"available: {', '.join(p.stem for p in found)}")
    return [p for p in found if any(named(p, w) for w in wanted)]


def failing_cell(error) -> str:
    """A one-line description of where papermill stopped."""
    return f"cell {getattr(error, 'exec_count', '?')}: {getattr(error, 'ename', '')}: {getattr(error, 'evalue', error)}"


def kernel_config():
    """Kernels talk to the runner over local IPC sockets, not TCP: nothing listens on the network,
    and ipykernel has no reason to print its "running over TCP without encryption" warning. The
    kernel's own log stays quiet below CRITICAL (at shutdown it may log an interrupt it caught);
    a chapter's errors still reach the runner as failed cells."""
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc"},
                   "NotebookClient": {"extra_arguments": ["--IPKernelApp.log_level=CRITICAL"]}})


def publish(executed: Path, path: Path) -> None:
    """Copy an executed notebook over the committed chapter, less papermill's record of this machine's
    paths (the site and the repository publish the notebook's metadata)."""
    notebook = json.loads(executed.read_text())
    for key in ("input_path", "output_path"):
        notebook.get("metadata", {}).get("papermill", {}).pop(key, None)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def is_toy(path: Path) -> bool:
    """Whether a chapter trains its own toy model (`start(..., toy=True)`): its claims do not depend on
    model_name, so it has one record, made with its default parameters."""
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    return re.search(r"\bstart\([^)]*\btoy\s*=\s*True", code) is not None


def run_one(path: Path, model: str | None, parameters: dict) -> dict:
    """Execute one chapter; returns its row for the summary table."""
    import papermill as pm

    if model and model != default_model(path) and is_toy(path):
        return {"chapter": path.stem, "status": "skipped (trains its own toy model; model_name not used)"}
    record_model = model or default_model(path)
    (records_dir(record_model) / f"{path.stem}.json").unlink(missing_ok=True)  # no stale verdicts
    out_dir = ROOT / "_build" / "runs" / model.replace("/", "__") if model else ROOT / "_build" / "executing"
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    begin = time.perf_counter()
    row = {"chapter": path.stem}
    try:
        pm.execute_notebook(str(path), str(output), parameters=parameters, kernel_name="python3",
                            cwd=str(CHAPTERS), progress_bar=False, log_output=False, config=kernel_config())
        if model is None:
            publish(output, path)  # the committed book gets the fresh outputs
        commit_record(path, record_model, parameters)
        row["status"] = "ok"
    except Exception as error:  # papermill raises PapermillExecutionError; report and go on
        row["status"] = f"FAILED ({failing_cell(error)})"
    row["wall_s"] = round(time.perf_counter() - begin, 1)
    return row | verdicts(path.stem, record_model)


def code_hash(path: Path) -> str:
    """A digest of a chapter's code cells (not outputs, not papermill's injected cell): a record made
    from other code is stale."""
    digest = hashlib.sha256()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code" and "injected-parameters" not in cell.get("metadata", {}).get("tags", []):
            digest.update("".join(cell["source"]).encode() + b"\0")
    return digest.hexdigest()[:16]


def commit_record(path: Path, model: str, parameters: dict) -> Path | None:
    """Stamp the run's record with the chapter's code hash; for an embedded model run with default
    parameters, copy it to results/<model>/ (the committed records the replication page reads)."""
    from lib.models import EMBEDDED

    record_path = records_dir(model) / f"{path.stem}.json"
    if not record_path.exists():
        return None
    record = json.loads(record_path.read_text())
    record["code_hash"] = code_hash(path)
    text = json.dumps(record, indent=2, default=str) + "\n"
    record_path.write_text(text)
    if model not in EMBEDDED or not set(parameters) <= RECORDED_PARAMETERS:
        return None
    target = RESULTS / model / f"{path.stem}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def chapter_parameters(path: Path) -> dict:
    """Names and default values set by a chapter's parameters cell, in the cell's order."""
    for cell in json.loads(path.read_text())["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            namespace: dict = {}
            exec("".join(cell["source"]), namespace)  # plain literals only, by convention
            return {k: v for k, v in namespace.items() if not k.startswith("__")}
    raise SystemExit(f"{path.stem}: no cell tagged 'parameters'")


def default_model(path: Path) -> str:
    """The model_name a chapter's parameters cell sets."""
    return chapter_parameters(path)["model_name"]


def check_override(chapter: str, defaults: dict, key: str, value) -> None:
    """SystemExit with one line if `key` is not one of the chapter's parameters or has the wrong type."""
    if key not in defaults:
        close = difflib.get_close_matches(key, defaults, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SystemExit(f"{key}: not a parameter of {chapter}{hint}; "
                         f"its parameters are {', '.join(defaults)}")
    expected = type(defaults[key])
    if not (type(value) is expected or (expected is float and type(value) is int)):
        words = TYPE_WORDS.get(expected, expected.__name__)
        raise SystemExit(f"{key}: expected {words} like the default {defaults[key]!r}, got {value!r}")


def check_overrides(chapters: list[Path], parameters: dict) -> None:
    """Validate every override against every selected chapter before any of them runs."""
    for path in chapters:
        defaults = chapter_parameters(path)
        for key, value in parameters.items():
            check_override(path.stem, defaults, key, value)


def verdicts(chapter: str, model: str) -> dict:
    """Peak memory and verdict counts from the run's JSON record, if it wrote one."""
    record_path = records_dir(model) / f"{chapter}.json"
    if not record_path.exists():
        return {}
    record = json.loads(record_path.read_text())
    counts = {}
    for claim in record["claims"]:
        counts[claim["verdict"]] = counts.get(claim["verdict"], 0) + 1
    return {"peak_mb": record["peak_memory_mb"], "verdicts": ", ".join(f"{n} {v}" for v, n in counts.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model for every chapter (default: each chapter's own)")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    parser.add_argument("--chapters", default=None, help="comma-separated numbers or names, e.g. 01,02")
    parser.add_argument("overrides", nargs="*", help="parameter overrides as key=value")
    args = parser.parse_args(argv)
    parameters = parse_overrides(args.overrides)
    if args.device != "auto":
        parameters["device"] = args.device
    if args.model:
        parameters["model_name"] = args.model
    chapters = select_chapters(args.chapters)
    check_overrides(chapters, parameters)
    rows = []
    for path in tqdm(chapters, desc="chapters", unit="chapter"):
        rows.append(run_one(path, args.model, parameters))
    print_summary(rows)
    return 1 if any(r["status"].startswith("FAILED") for r in rows) else 0


def print_summary(rows: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows).fillna("")
    print("\n" + frame.to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
