"""Metrics of a patched or ablated run, read from its last-token logits.

A metric maps (logits [rows, vocab], pair [rows]) to one number per row, where `pair` says which
prompt pair (and so which answer token) each row belongs to: a sweep's rows repeat pairs.

    metric = logit_diff_metric(answer_ids, wrong_ids)   # IOI: logit(IO) - logit(S)
    metric = prob_metric(answer_ids)                     # ROME: p(answer)
    metric = top1_metric(answer_ids)                     # accuracy per row

Taught in chapter 02 (probability and accuracy) and chapter 06 (logit difference).
"""

from __future__ import annotations

from collections.abc import Callable

from jaxtyping import Float, Int
from torch import Tensor

Metric = Callable[[Tensor, Tensor], Tensor]  # (last-token logits [rows, vocab], pair [rows]) -> [rows]


def prob_metric(answer: Int[Tensor, " pair"]) -> Metric:
    """Probability of each pair's answer token at the last position."""
    def metric(logits: Float[Tensor, "rows vocab"], pair: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
        return logits.softmax(-1).gather(-1, answer.to(logits.device)[pair][:, None])[:, 0]
    return metric


def top1_metric(answer: Int[Tensor, " pair"]) -> Metric:
    """1.0 where the greedy next token is the pair's answer token, else 0.0 (accuracy per row)."""
    def metric(logits: Float[Tensor, "rows vocab"], pair: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
        return (logits.argmax(-1) == answer.to(logits.device)[pair]).float()
    return metric


def logit_diff_metric(answer: Int[Tensor, " pair"], wrong: Int[Tensor, " pair"]) -> Metric:
    """Logit of each pair's answer minus that of its wrong answer, at the last position."""
    def metric(logits: Float[Tensor, "rows vocab"], pair: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
        right = logits.gather(-1, answer.to(logits.device)[pair][:, None])[:, 0]
        return right - logits.gather(-1, wrong.to(logits.device)[pair][:, None])[:, 0]
    return metric
