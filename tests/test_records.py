"""The committed records (results/<model>/<chapter>.json) carry each claim's evidence, match the
chapters that made them, and the "Does it replicate?" page matches the records."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lib import claims as C
from lib import replication, stats
from lib.models import EMBEDDED
from lib.runner import code_hash, default_model, is_toy

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
PAIRS = [(p, m) for p in CHAPTERS for m in EMBEDDED if not is_toy(p) or m == default_model(p)]
LM_CHAPTERS = [p for p in CHAPTERS if not is_toy(p)]  # toy chapters train their own model: one record


def record(path: Path, model: str) -> dict:
    target = ROOT / "results" / model / f"{path.stem}.json"
    assert target.exists(), f"no committed record {target.relative_to(ROOT)}: run `make book` / `make replicate`"
    return json.loads(target.read_text())


@pytest.mark.parametrize("path,model", PAIRS, ids=[f"{p.stem}-{m}" for p, m in PAIRS])
def test_record_is_fresh_and_carries_the_evidence(path, model):
    rec = record(path, model)
    assert rec["code_hash"] == code_hash(path), \
        f"results/{model}/{path.stem}.json was made from other code: re-run the chapter on {model}"
    assert rec["claims"], "a chapter states at least one claim"
    for claim in rec["claims"]:
        if claim["verdict"] == "no verdict":
            assert claim["reason"], f"{claim['key']}: a 'no verdict' says why"
            continue
        low, high = claim["ci"]
        assert all(isinstance(v, (int, float)) and math.isfinite(v)
                   for v in (claim["value"], low, high, claim["null"], claim["bar"])), claim["key"]
        assert claim["null_label"], claim["key"]
        assert claim["verdict"] == C.decide((low, high), claim["bar"], claim["above"]), \
            f"{claim['key']}: the verdict does not follow the interval"
        if claim.get("null_comparable") and claim["verdict"] == "holds":
            met = claim["null"] > claim["bar"] if claim["above"] else claim["null"] < claim["bar"]
            assert not met, f"{claim['key']}: a 'holds' whose null also clears the bar tests nothing"


@pytest.mark.parametrize("path", LM_CHAPTERS, ids=[p.stem for p in LM_CHAPTERS])
def test_both_models_test_the_same_claims(path):
    keys = {m: [c["key"] for c in record(path, m)["claims"]] for m in EMBEDDED}
    first, *others = keys.values()
    assert all(k == first for k in others), f"claim keys differ between models: {keys}"


def committed_table_text(path: Path) -> str:
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code" and "".join(cell["source"]).startswith("# NBVAL_CHECK_OUTPUT"):
            for output in cell.get("outputs", []):
                if "text/plain" in output.get("data", {}):
                    return "".join(output["data"]["text/plain"])
    raise AssertionError(f"{path.stem}: no claims table output")


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_default_record_is_the_committed_chapter(path):
    """The committed notebook's claims table is the one its default model's record describes."""
    rec = record(path, default_model(path))
    rows = [{"claim": c["claim"], "paper": f"{c['paper']} [{c['source']}]", "ours [95% CI]": c["ours"],
             "null": c["null_text"], "bar": c["bar_text"],
             "verdict": f"no verdict: {c['reason']}" if c["reason"] else c["verdict"]} for c in rec["claims"]]
    import pandas as pd

    frame = pd.DataFrame(rows, columns=C.COLUMNS)
    frame.index = range(1, len(frame) + 1)
    assert repr(C.ClaimsTable(frame, rec["stamp"])) == committed_table_text(path)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_a_departures_table(path):
    text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                     if c["cell_type"] == "markdown")
    assert "## Departures from the paper" in text, "a short table: what the paper did, what we do, why"
    after = text.split("## Departures from the paper", 1)[1]
    assert "|---" in after.split("\n## ", 1)[0].replace(" ", ""), "the departures section holds a table"


def test_replication_page_matches_the_records():
    assert replication.PAGE.read_text() == replication.page_text(replication.load_records()), \
        "replication.md is out of date: run `make replication`"
    assert replication.FIGURE.exists()


# --- the statistics and the verdict rule ---------------------------------------------------------

def test_decide_follows_the_interval():
    assert C.decide((0.2, 0.4), 0.1) == "holds"
    assert C.decide((0.0, 0.1), 0.1) == "does not hold"
    assert C.decide((0.05, 0.2), 0.1) == "inconclusive"
    assert C.decide((0.05, 0.08), 0.1, above=False) == "holds"
    assert C.decide((0.1, 0.3), 0.1, above=False) == "does not hold"
    assert C.decide((float("nan"), 1.0), 0.1) == "inconclusive"


def test_claim_without_evidence_is_refused():
    good = dict(key="k", claim="c", source="s", paper="p", value=0.3, ci=(0.2, 0.4), null=0.1,
                null_label="random", bar=0.15, above=True)
    C.Claim(**good).check()
    with pytest.raises(ValueError, match="finite"):
        C.Claim(**{**good, "ci": (float("nan"), 0.4)}).check()
    with pytest.raises(ValueError, match="null_label"):
        C.Claim(**{**good, "null_label": ""}).check()
    with pytest.raises(ValueError, match="key"):
        C.Claim(**{**good, "key": "Bad Key"}).check()
    met = C.Claim(**{**good, "null": 0.2, "null_comparable": True})
    assert met.verdict == "no verdict" and "also clears the bar" in met.reason
    assert C.Claim(**{**good, "null": 0.2}).verdict == "holds"  # a difference-form claim's null is another scale
    no = C.Claim(**{**good, "value": float("nan"), "reason": "task at chance"})
    no.check()
    assert no.verdict == "no verdict" and C.verdict_text(no) == "no verdict: task at chance"


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, big = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 2000)
    m_small, (lo_s, hi_s) = stats.mean_ci(small)
    m_big, (lo_b, hi_b) = stats.mean_ci(big)
    assert lo_s < m_small < hi_s and lo_b < m_big < hi_b
    assert hi_b - lo_b < (hi_s - lo_s) / 3
    assert lo_b < 1.0 < hi_b


def test_cluster_bootstrap_is_wider_when_clusters_differ():
    values = np.concatenate([np.full(100, v) + np.random.default_rng(1).normal(0, 0.1, 100) for v in (0, 1, 2)])
    labels = np.repeat([0, 1, 2], 100)
    _, (lo_i, hi_i) = stats.mean_ci(values)
    _, (lo_c, hi_c) = stats.mean_ci(values, clusters=labels)
    assert hi_c - lo_c > 5 * (hi_i - lo_i)


def test_paired_difference_and_null_quantile():
    a = np.arange(100.0)
    diff, (lo, hi) = stats.diff_ci(a + 1.0, a)
    assert diff == pytest.approx(1.0) and lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    assert stats.null_quantile(np.arange(101.0), 0.95) == pytest.approx(95.0)
    assert stats.percentile_rank(200.0, np.arange(99.0)) == pytest.approx(0.01)


def test_table_shows_interval_null_and_bar():
    c = C.Claim("k", "claim", "src", "paper", 0.4213, (0.3512, 0.4999), 0.05123, "random heads", 0.1, True,
                "null's 95th percentile")
    row = C.table([c]).iloc[0]
    assert row["ours [95% CI]"] == "0.421 [0.351, 0.5]"
    assert row["null"] == "0.0512 (random heads)"
    assert row["bar"] == "> 0.1 (null's 95th percentile)"
    assert row["verdict"] == "holds"
    assert C.record_row(c)["ours"] == "0.421 [0.351, 0.5]"
