"""The "Does it replicate?" page: every claim of every chapter, one column per embedded model.

Built only from the committed records in results/<model>/<chapter>.json, which `make book` (the
default model) and `make replicate` (the other one) write. `python -m lib.replication` rewrites
replication.md and its figure; a test fails when the committed page and the records disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
PAGE = ROOT / "replication.md"
FIGURE = ROOT / "figures" / "replication_grid.png"
SHORT = {"holds": "holds", "does not hold": "fails", "inconclusive": "unclear", "no verdict": "n/v",
         "not run": "–"}
ORDER = ["holds", "does not hold", "inconclusive", "no verdict", "not run"]
COLOURS = ["#1a7f37", "#cf222e", "#d4a72c", "#8c959f", "#ffffff"]


def models() -> list[str]:
    from lib.models import EMBEDDED

    return list(EMBEDDED)


def load_records(results: Path = RESULTS) -> dict[str, dict[str, dict]]:
    """{model: {chapter: record}} from results/."""
    out: dict[str, dict[str, dict]] = {}
    for model in models():
        for path in sorted((results / model).glob("[0-9][0-9]_*.json")):
            out.setdefault(model, {})[path.stem] = json.loads(path.read_text())
    return out


def grid(records: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per (chapter, claim key), in chapter order then the chapter's own order."""
    rows: dict[tuple[str, str], dict] = {}
    chapters = sorted({c for per_model in records.values() for c in per_model})
    for chapter in chapters:
        for model in models():
            for claim in records.get(model, {}).get(chapter, {}).get("claims", []):
                row = rows.setdefault((chapter, claim["key"]), {"chapter": chapter, "key": claim["key"],
                                                                 "claim": claim["claim"], "cells": {},
                                                                 "toy": False})
                row["cells"][model] = claim
                row["toy"] = row["toy"] or bool(records[model][chapter].get("toy"))
    return list(rows.values())


TOY_CELL = "– (a toy model trained in the chapter; no language model)"


def cell_text(claim: dict | None, toy: bool = False) -> str:
    if claim is None:
        return TOY_CELL if toy else "not run"
    if claim["verdict"] == "no verdict":
        return f"**no verdict** ({claim.get('reason') or ''})"
    return f"**{claim['verdict']}** {claim['ours']}"


def chapter_title(chapter: str) -> str:
    return f"[{chapter[:2]}](chapters/{chapter}.ipynb)"


def page_text(records: dict[str, dict[str, dict]]) -> str:
    rows = grid(records)
    names = models()
    counts = {m: {v: 0 for v in ORDER} for m in names}
    for row in rows:
        for m in names:
            counts[m][row["cells"].get(m, {}).get("verdict", "not run")] += 1
    toy_chapters = sorted({r["chapter"][:2] for r in rows if r["toy"]})
    lines = [
        "# Does it replicate?",
        "",
        "Every claim the book tests, on both embedded models. Each cell is the verdict, our value and its "
        "95% bootstrap interval; the chapter gives the null and the bar, fixed before the run. A verdict "
        "is decided on the interval: **holds** when it clears the bar, **does not hold** when it lies "
        "wholly on the other side, **inconclusive** when it straddles the bar, **no verdict** when the "
        "measurement cannot test the claim (the reason is given).",
        "",
        "This page is built from the committed run records (`results/<model>/<chapter>.json`) by "
        "`python -m lib.replication`; `make book` refreshes the default model's records and "
        "`make replicate` the other model's. A test fails when a record is stale.",
        "",
        "```{figure} figures/replication_grid.png",
        ":name: fig-replication-grid",
        "",
        "Verdicts of every claim (rows) on each embedded model (columns).",
        "```",
        "",
        "| model | " + " | ".join(ORDER[:-1]) + " |",
        "|---|" + "---|" * (len(ORDER) - 1),
    ]
    lines += [f"| {m} | " + " | ".join(str(counts[m][v]) for v in ORDER[:-1]) + " |" for m in names]
    if toy_chapters:
        lines += ["", f"Chapter{'s' if len(toy_chapters) > 1 else ''} {', '.join(toy_chapters)} "
                  "train{} a toy model in the notebook, so {} claims do not depend on the language model; they are "
                  "counted once, under the model the chapter's parameters name.".format(
                      "" if len(toy_chapters) > 1 else "s", "their" if len(toy_chapters) > 1 else "its")]
    lines += ["", "| chapter | claim | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = " | ".join(cell_text(row["cells"].get(m), row["toy"]) for m in names)
        lines.append(f"| {chapter_title(row['chapter'])} | {row['claim']} | {cells} |")
    lines += ["", "## The runs", "", "| chapter | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for chapter in sorted({c for per_model in records.values() for c in per_model}):
        cells = []
        for m in names:
            r = records.get(m, {}).get(chapter)
            toy = any(rr.get(chapter, {}).get("toy") for rr in records.values())
            cells.append(("– (toy)" if toy else "not run") if r is None else
                         f"{r['device']}, {r['wall_time_s']:.0f} s, {r['peak_memory_mb'] / 1024:.1f} GiB peak")
        lines.append(f"| {chapter_title(chapter)} | " + " | ".join(cells) + " |")
    lines += ["", "Times and memory are each record's own: the device it ran on, its wall time from the "
              "setup call to the claims table, and its peak memory (resident set on a CPU, allocator "
              "peak on a GPU).", ""]
    return "\n".join(lines)


def draw(records: dict[str, dict[str, dict]], path: Path = FIGURE):
    """The claim x model grid coloured by verdict, with our value in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, names = grid(records), models()
    codes = [[ORDER.index(r["cells"].get(m, {}).get("verdict", "not run")) for m in names] for r in rows]
    labels = [[SHORT[r["cells"][m]["verdict"]] + " " + r["cells"][m]["ours"].split(" [")[0]
               if m in r["cells"] else ("toy" if r["toy"] else "–") for m in names] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.6))
    ax.imshow(codes, cmap=ListedColormap(COLOURS), vmin=0, vmax=len(ORDER) - 1, aspect="auto")
    for i, row in enumerate(labels):
        for j, text in enumerate(row):
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if codes[i][j] in (0, 1) else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(rows)), [f"{r['chapter'][:2]} {r['key']}" for r in rows], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_title("Does it replicate? Verdict by claim and model", pad=28)
    ax.legend(handles=[Patch(color=c, label=v) for v, c in zip(ORDER[:-1], COLOURS)], fontsize=7,
              loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=4, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return fig


def build() -> Path:
    records = load_records()
    PAGE.write_text(page_text(records))
    draw(records)
    return PAGE


if __name__ == "__main__":
    print(f"wrote {build().relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}")
