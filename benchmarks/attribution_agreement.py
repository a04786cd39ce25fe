"""Does attribution patching rank heads as exact patching does? Every head of a real model, two tasks.

For each task, exact head patching (`lib.patching.patch_sweep`, site 'head', all positions, denoise)
and its attribution estimate (`lib.attribution.attribution_sweep`, same arguments) give one effect per
(pair, layer, head); we compare the mean effect over pairs across all heads: Spearman rank
correlation, and the overlap of the top-k heads by |effect| (k = 10% of heads, and 10).
  ioi        data/ioi/prompts.jsonl: clean prompt vs its ABC corruption; metric logit(IO) - logit(S)
  induction  a random token sequence repeated (clean) vs the same second half after a different first
             half (corrupt); metric logit(next token of the repeat) - logit(the corrupt's own token there)

    python benchmarks/attribution_agreement.py --model smollm2-135m --pairs 16 --out benchmarks/results/attribution_agreement.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import beartype  # noqa: E402,F401  (before nnsight)

from benchmarks.bench_patching import spearman, top_k_overlap  # noqa: E402


def ioi_task(tokenizer, n: int) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    from lib.data import encode, first_token_id, load_jsonl

    rows = load_jsonl("ioi/prompts")[:n]
    enc = encode(tokenizer, [r["prompt"] for r in rows] + [r["corrupted"] for r in rows])
    answer = torch.tensor([first_token_id(tokenizer, r["io"]) for r in rows])
    wrong = torch.tensor([first_token_id(tokenizer, r["s"]) for r in rows])
    return {k: v[:n] for k, v in enc.items()}, {k: v[n:] for k, v in enc.items()}, answer, wrong


def induction_task(vocab: int, n: int, length: int = 10, seed: int = 0) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    first, other = (torch.randint(1000, min(vocab, 20000), (n, length), generator=g) for _ in range(2))
    clean = torch.cat([first, first[:, :-1]], 1)
    corrupt = torch.cat([other, first[:, :-1]], 1)
    mask = torch.ones_like(clean)
    return ({"input_ids": clean, "attention_mask": mask}, {"input_ids": corrupt, "attention_mask": mask},
            first[:, -1], other[:, -1])


def compare(model, task, name: str) -> dict:
    from lib.attribution import attribution_sweep
    from lib.metrics import logit_diff_metric
    from lib.patching import patch_sweep

    clean, corrupt, answer, wrong = task
    metric = logit_diff_metric(answer, wrong)
    exact = patch_sweep(model, clean, corrupt, "head", metric)
    est = attribution_sweep(model, clean, corrupt, "head", metric, chunk_size=8)
    e_exact = (exact.values - exact.corrupt[:, None, None]).mean(0)  # [layer, head]
    e_est = (est.values - est.corrupt[:, None, None]).mean(0)
    n_heads = e_exact.numel()
    k10 = max(1, n_heads // 10)
    out = {"task": name, "pairs": int(answer.numel()), "heads": n_heads,
           "clean_metric": float(exact.clean.mean()), "corrupt_metric": float(exact.corrupt.mean()),
           "spearman": spearman(e_est, e_exact), "pearson": float(torch.corrcoef(torch.stack(
               [e_est.flatten(), e_exact.flatten()]))[0, 1]),
           f"top{k10}_overlap": top_k_overlap(e_est, e_exact, k10), "top10_overlap": top_k_overlap(e_est, e_exact, 10),
           "per_pair_spearman_median": float(torch.tensor([spearman(a, b) for a, b in zip(
               est.values - est.corrupt[:, None, None], exact.values - exact.corrupt[:, None, None])]).median())}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/attribution_agreement.json"))
    args = parser.parse_args()
    from lib.arch import Arch
    from lib.models import load_model

    model = load_model(args.model, args.device)
    results = [compare(model, ioi_task(model.tokenizer, args.pairs), "ioi"),
               compare(model, induction_task(Arch(model).vocab_size, args.pairs), "induction")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
