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
import re
import resource
import textwrap
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import torch

VERDICTS = ("holds", "does not hold", "inconclusive", "no verdict")
KEY = re.compile(r"[a-z][a-z0-9_]*")


def decide(ci: tuple[float | int, float | int], bar: float | int, above: bool = True) -> str:
    """The verdict on the interval: it clears the bar, lies wholly on the other side, or straddles it.

    With `above`, the claim is "the value exceeds the bar": holds when the interval's low end is
    above it, does not hold when its high end is at or below it. Without, the claim is "below".
    """
    low, high = ci
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if above:
        return "holds" if low > bar else "does not hold" if high <= bar else "inconclusive"
    return "holds" if high < bar else "does not hold" if low >= bar else "inconclusive"


@dataclass
class Claim:
    """One row: the paper's claim, our value with its 95% interval, the null measured in the same
    run, the bar fixed before the run, and the verdict decided on the interval."""

    key: str  # short snake_case id, stable across models (the replication page's row)
    claim: str  # the claim, stated so that it can hold or fail
    source: str  # references.bib key of the paper
    paper: str  # the paper's number, with its model
    value: float  # our estimate
    ci: tuple[float, float]  # its 95% bootstrap interval
    null: float  # the null or control, measured in the same run
    null_label: str  # what the null is ("random heads, 95th percentile")
    bar: float  # the value the interval must clear
    above: bool  # True: the claim is value > bar; False: value < bar
    bar_label: str = ""  # how the bar was set ("the null's 95th percentile", "chance")
    reason: str | None = None  # set when the measurement cannot test the claim: verdict "no verdict"
    null_comparable: bool = False  # the null is the same measure as the value, so it must not clear the bar

    def __post_init__(self):
        if self.null_comparable and not self.reason and _finite(self.null) and _finite(self.bar) \
                and (self.null > self.bar if self.above else self.null < self.bar):
            self.reason = (f"the null ({fmt(self.null)}) also clears the bar, so the measure cannot tell the "
                           f"claim from its control")

    @property
    def verdict(self) -> str:
        return "no verdict" if self.reason else decide(self.ci, self.bar, self.above)

    def check(self) -> None:
        """ValueError with one line when the row lacks its evidence."""
        if not KEY.fullmatch(self.key):
            raise ValueError(f"key: expected a snake_case id like 'late_commitment', got {self.key!r}")
        if not self.reason:
            numbers = {"value": self.value, "ci low": self.ci[0], "ci high": self.ci[1], "null": self.null,
                       "bar": self.bar}
            bad = [name for name, v in numbers.items() if not _finite(v)]
            if bad:
                raise ValueError(f"{self.key}: {', '.join(bad)} must be finite numbers, or give a reason "
                                 f"for 'no verdict'")
            if self.ci[0] > self.ci[1]:
                raise ValueError(f"{self.key}: ci must be (low, high), got {self.ci}")
        if not self.null_label:
            raise ValueError(f"{self.key}: null_label: say what the null is (e.g. 'random heads')")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
        if rounded == 0:
            return "0"  # not "-0"
        return f"{rounded:.0f}" if abs(rounded) >= 1000 else f"{rounded:.3g}"  # 22100, not 2.21e+04
    return str(value)


def with_interval(value, ci) -> str:
    """ "0.42 [0.35, 0.49]", or "n/a" for a value that could not be measured."""
    if not _finite(value):
        return "n/a"
    if ci is None or not all(_finite(c) for c in ci):
        return fmt(value)
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def bar_text(claim: Claim) -> str:
    text = f"{'>' if claim.above else '<'} {fmt(claim.bar)}" if _finite(claim.bar) else "n/a"
    return f"{text} ({claim.bar_label})" if claim.bar_label else text


def null_text(claim: Claim) -> str:
    return f"{fmt(claim.null) if _finite(claim.null) else 'n/a'} ({claim.null_label})"


def verdict_text(claim: Claim) -> str:
    return f"no verdict: {claim.reason}" if claim.reason else claim.verdict


COLUMNS = ["claim", "paper", "ours [95% CI]", "null", "bar", "verdict"]


def table(claims: list[Claim]) -> pd.DataFrame:
    """The claims table as a DataFrame of strings (what the book shows and nbval checks)."""
    rows = [
        {"claim": c.claim, "paper": f"{c.paper} [{c.source}]", "ours [95% CI]": with_interval(c.value, c.ci),
         "null": null_text(c), "bar": bar_text(c), "verdict": verdict_text(c)}
        for c in claims
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.index = range(1, len(frame) + 1)
    return frame


def record_row(claim: Claim) -> dict:
    """A claim as the JSON record stores it: every field, the verdict, and the table's texts."""
    row = asdict(claim)
    row.update(value=_jsonable(claim.value), ci=[_jsonable(c) for c in claim.ci], null=_jsonable(claim.null),
               bar=_jsonable(claim.bar), verdict=claim.verdict, ours=with_interval(claim.value, claim.ci),
               null_text=null_text(claim), bar_text=bar_text(claim))
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


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
                colour = _VERDICT_COLOURS.get(str(text).split(":")[0], "inherit") if column == "verdict" else "inherit"
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
    """Plain JSON values: tensors and numpy arrays as lists, numpy scalars as numbers (also inside
    lists, tuples and dicts), NaN and infinity as null; anything else as its string."""
    if torch.is_tensor(value) or (hasattr(value, "tolist") and hasattr(value, "shape") and value.shape != ()):
        value = value.tolist()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def write_record(chapter) -> Path:
    """Write chapter, model, parameters, measurements, verdicts, wall time and peak memory as JSON."""
    record = {
        "chapter": chapter.name,
        "model": chapter.model_name,
        "parameters": {k: _jsonable(v) for k, v in chapter.params.items()},
        "measurements": {k: _jsonable(v) for k, v in chapter.measurements.items()},
        "claims": [record_row(c) for c in chapter.claims],
        "wall_time_s": round(time.perf_counter() - chapter.started, 2),
        "peak_memory_mb": round(peak_memory_mb(chapter.device), 1),
        "device": chapter.device,
        "stamp": getattr(chapter, "stamp_line", ""),
    }
    if getattr(chapter, "toy", False):
        record["toy"] = True  # trains its own model: the claims do not depend on model_name
    path = records_dir(chapter.model_name) / f"{chapter.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    return path
