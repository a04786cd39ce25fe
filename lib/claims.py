"""The claims table that ends every chapter, and the JSON record each run writes.

The table is the chapter's nbval-checked output: values are rounded to three significant figures
(integers as they are), so float noise across machines, thread counts and devices does not show,
while any real change in a measurement or verdict fails the tests. A provenance stamp under the
table says which weights, items, device and library versions produced it.
"""

from __future__ import annotations

import html
import json
import math
import os
import resource
import textwrap
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import torch

VERDICTS = {True: "holds", False: "does not hold", None: "no verdict"}


@dataclass
class Claim:
    """One row: what the paper says, what we measured, the bar, and whether it was met."""

    claim: str  # short statement of the claim
    source: str  # references.bib key of the paper
    paper: str  # the paper's number, with its model
    measured: object  # our number (float/int) or a short string
    bar: str  # what counts as holding, as the issue/paper sets it
    holds: bool | None  # None when the data cannot test the claim (say why in the chapter)

    @property
    def verdict(self) -> str:
        return VERDICTS[None if self.holds is None else bool(self.holds)]


def fmt(value) -> str:
    """Round for display and stable comparison: 3 significant figures for floats, ints as they are.

    22135.735 -> "22100", 0.75531 -> "0.755", 0.000123456 -> "0.000123": the digits past the third
    are float noise across machines (summation order, threads, GPU kernels), not findings.
    """
    if isinstance(value, (bool, int)):
        return str(value)
    if torch.is_tensor(value) and value.numel() == 1:
        return fmt(value.item())
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars
        return fmt(value.item())
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        rounded = float(f"{value:.3g}")
        return f"{rounded:.0f}" if abs(rounded) >= 1000 else f"{value:.3g}"  # 22100, not 2.21e+04
    return str(value)


COLUMNS = ["claim", "paper", "ours", "bar", "verdict"]


def table(claims: list[Claim]) -> pd.DataFrame:
    """The claims table as a DataFrame of strings (what the book shows and nbval checks)."""
    rows = [
        {"claim": c.claim, "paper": f"{c.paper} [{c.source}]", "ours": fmt(c.measured),
         "bar": c.bar, "verdict": c.verdict}
        for c in claims
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.index = range(1, len(frame) + 1)
    return frame


def library_versions() -> str:
    """torch, transformers and nnsight versions, as the stamp shows them."""
    def one(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} (not installed)"
    return ", ".join(one(n) for n in ("torch", "transformers", "nnsight"))


def stamp(model_name: str, weights: str, items: str, device: str) -> str:
    """One provenance line: the model and its weights, the items, the device and the library versions."""
    return f"Run: {model_name} ({weights}) · {items} · {device} · {library_versions()}"


_VERDICT_COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700",
                    "no verdict": "#57606a"}


class ClaimsTable:
    """The claims table with its provenance stamp: full text, wrapped, in HTML and in plain text."""

    def __init__(self, frame: pd.DataFrame, stamp_line: str):
        self.frame, self.stamp = frame, stamp_line

    def _repr_html_(self) -> str:
        cell = "padding:4px 8px;text-align:left;vertical-align:top;white-space:normal;overflow-wrap:anywhere"
        head = "".join(f'<th style="{cell}">{html.escape(c)}</th>' for c in ["#", *self.frame.columns])
        body = []
        for number, row in self.frame.iterrows():
            cells = [f'<td style="{cell}">{number}</td>']
            for column, text in row.items():
                colour = _VERDICT_COLOURS.get(text, "inherit") if column == "verdict" else "inherit"
                weight = "bold" if column == "verdict" else "normal"
                cells.append(f'<td style="{cell};color:{colour};font-weight:{weight}">{html.escape(str(text))}</td>')
            body.append(f"<tr>{''.join(cells)}</tr>")
        return (f'<table class="claims-table" style="table-layout:auto;width:100%;border-collapse:collapse">'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                f'<p class="claims-stamp" style="font-size:0.85em;color:#57606a">{html.escape(self.stamp)}</p>')

    def __repr__(self) -> str:
        blocks = []
        for number, row in self.frame.iterrows():
            lines = textwrap.wrap(f"{number}. {row['claim']}", 100, subsequent_indent="   ")
            for column in COLUMNS[1:]:
                lines += textwrap.wrap(f"{column}: {row[column]}", 100, initial_indent="   ",
                                       subsequent_indent="      ")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n\n" + "\n".join(textwrap.wrap(self.stamp, 100))


def records_dir(model_name: str) -> Path:
    """Where run records go: $FIELD_GUIDE_RECORDS or _build/records/<model>/."""
    root = Path(os.environ.get("FIELD_GUIDE_RECORDS", Path(__file__).resolve().parent.parent / "_build" / "records"))
    return root / model_name.replace("/", "__")


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: GPU allocator peak on CUDA, else max resident set size."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _jsonable(value):
    if torch.is_tensor(value):
        return value.tolist()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return value if isinstance(value, (int, float, str, bool, type(None), list, dict)) else str(value)


def write_record(chapter) -> Path:
    """Write chapter, model, parameters, measurements, verdicts, wall time and peak memory as JSON."""
    record = {
        "chapter": chapter.name,
        "model": chapter.model_name,
        "parameters": {k: _jsonable(v) for k, v in chapter.params.items()},
        "measurements": {k: _jsonable(v) for k, v in chapter.measurements.items()},
        "claims": [{**asdict(c), "measured": _jsonable(c.measured), "verdict": c.verdict} for c in chapter.claims],
        "wall_time_s": round(time.perf_counter() - chapter.started, 2),
        "peak_memory_mb": round(peak_memory_mb(chapter.device), 1),
        "device": chapter.device,
        "stamp": getattr(chapter, "stamp_line", ""),
    }
    path = records_dir(chapter.model_name) / f"{chapter.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    return path
