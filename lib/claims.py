"""The claims table that ends every chapter, and the JSON record each run writes.

The table is the chapter's nbval-checked output: values are rounded to three significant
decimals so reruns on one machine match exactly, and any change in a measurement or verdict
fails the tests.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass
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
    """Round for display and stable comparison: 3 decimals for floats, ints as they are."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    if torch.is_tensor(value) and value.numel() == 1:
        return fmt(value.item())
    return str(value)


def table(claims: list[Claim]) -> pd.DataFrame:
    """The claims table as a DataFrame of strings (what the book shows and nbval checks)."""
    rows = [
        {"claim": c.claim, "paper": f"{c.paper} [{c.source}]", "ours": fmt(c.measured),
         "bar": c.bar, "verdict": c.verdict}
        for c in claims
    ]
    frame = pd.DataFrame(rows, columns=["claim", "paper", "ours", "bar", "verdict"])
    frame.index = range(1, len(frame) + 1)
    return frame


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
    }
    path = records_dir(chapter.model_name) / f"{chapter.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    return path
