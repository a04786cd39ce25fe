"""lib.latent on the tiny word-level tokenizer and random tensors, against slow references."""

import beartype  # noqa: F401  (loaded before nnsight: nnsight first breaks beartype's import)
import numpy as np
import pytest
import torch

from lib import latent
from tests.tiny import WORDS, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def slow_prefix_ids(tokenizer, word):
    """Loop over the whole vocabulary, decoding each token: the definition, written plainly."""
    ids = []
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i])
        if i in tokenizer.all_special_ids or not text or latent.REPLACEMENT in text:
            continue
        bare = text[1:] if text.startswith(" ") else text
        if bare and word.startswith(bare):
            ids.append(i)
    return sorted(ids)


@pytest.mark.parametrize("word", ["w1", "w12", "w123", "w250", "x"])
def test_prefix_token_ids_matches_vocab_scan(tok, word):
    index = latent.vocab_index(tok)
    assert latent.prefix_token_ids(index, word) == slow_prefix_ids(tok, word)


def test_prefix_token_ids_word_level(tok):
    index = latent.vocab_index(tok)
    assert [WORDS[i] for i in latent.prefix_token_ids(index, "w123")] == ["w1", "w12", "w123"]


def test_prefix_sets_with_spaces():
    index = {"f": [1], " f": [2], "fl": [3], " flow": [4], "flower": [5], "x": [6], " ": [7], "flowers": [8]}
    assert latent.prefix_token_ids(index, "flower") == [1, 2, 3, 4, 5]


def test_answer_sets_filters(tok):
    index = latent.vocab_index(tok)
    assert latent.answer_sets(tok, index, "w12", "W12") is None          # same word up to case
    assert latent.answer_sets(tok, index, "w12", "w123") is None         # first token w12 is a prefix of w123
    target, english = latent.answer_sets(tok, index, "w34", "w56", context="w0 ")
    assert [WORDS[i] for i in target] == ["w3", "w34"] and [WORDS[i] for i in english] == ["w5", "w56"]


def test_set_probability_and_entropy(tiny_model):
    torch.manual_seed(0)
    vocab = len(tiny_model.tokenizer)
    logits = torch.randn(3, 4, vocab)
    sets = [[5, 6], [7], list(range(10, 20))]
    got = latent.set_probability(logits.softmax(-1), latent.multi_hot(sets, vocab))
    want = torch.stack([logits[b].softmax(-1)[:, ids].sum(-1) for b, ids in enumerate(sets)])
    torch.testing.assert_close(got, want)
    p = logits.softmax(-1).double()
    torch.testing.assert_close(latent.entropy_bits(logits).double(), -(p * p.log2()).sum(-1), rtol=1e-5, atol=1e-5)


def test_bootstrap_ci_matches_loop():
    values = torch.randn(30, 5)
    got = latent.bootstrap_ci(values, n_boot=200, seed=3)
    gen = torch.Generator().manual_seed(3)
    draws = torch.randint(0, 30, (200, 30), generator=gen)
    means = np.stack([values[d].double().mean(0).numpy() for d in draws])
    torch.testing.assert_close(got["mean"], values.double().mean(0))
    torch.testing.assert_close(got["low"].numpy(), np.quantile(means, 0.025, axis=0))
    torch.testing.assert_close(got["high"].numpy(), np.quantile(means, 0.975, axis=0))
    again = latent.bootstrap_ci(values, n_boot=200, seed=3)
    assert torch.equal(again["low"], got["low"])
    assert (got["low"] <= got["mean"]).all() and (got["mean"] <= got["high"]).all()


@pytest.mark.parametrize("mask, want", [([0, 1, 1, 0, 1], (1, 2)), ([0, 0], None), ([1, 0, 1], (0, 0)),
                                        ([0, 1, 1, 1], (1, 3))])
def test_longest_run(mask, want):
    assert latent.longest_run([bool(x) for x in mask]) == want
    assert latent.longest_run(torch.tensor(mask, dtype=torch.bool)) == want


def test_parse_tasks():
    assert latent.parse_tasks(["fr-zh", "zh-de"]) == [("fr", "zh"), ("zh", "de")]
    for bad in (["en-zh"], ["fr-en"], ["fr-fr"], [], "fr-zh", ["xx-zh"]):
        with pytest.raises(latent.ParameterError, match="tasks"):
            latent.parse_tasks(bad)


def test_shared_prefix_resid_matches_full_prompts(tiny_model):
    from lib.lens import last_token_resid

    prefix, suffixes = "w5 w6 w7", [" w8", " w9 w10 w11", " w12 w13"]
    got = latent.shared_prefix_resid(tiny_model, prefix, suffixes, batch_size=2)
    want = last_token_resid(tiny_model, [prefix + s for s in suffixes], batch_size=3)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_shared_prefix_resid_checks_token_boundary(tiny_model):
    with pytest.raises(ValueError, match="tokenize"):
        latent.shared_prefix_resid(tiny_model, "w5 w", ["6 w7"])


def test_disjoint_sets_generalises_answer_sets(tok):
    index = latent.vocab_index(tok)
    for target, english in [("w34", "w56"), ("w12", "w123"), ("w12", "W12"), ("w7", "w250")]:
        two = latent.answer_sets(tok, index, target, english, context="w0 ")
        many = latent.disjoint_sets(tok, index, {"t": target, "e": english}, context="w0 ")
        assert (two is None and many is None) or (many["t"], many["e"]) == two
    three = latent.disjoint_sets(tok, index, {"t": "w34", "e": "w56", "s": "w57"}, context="w0 ")
    assert [WORDS[i] for i in three["e"]] == ["w56"] and [WORDS[i] for i in three["s"]] == ["w57"]  # w5 shared
    assert latent.disjoint_sets(tok, index, {"t": "w34", "e": "w56", "s": "w5"}, context="w0 ") is None
    loose = latent.disjoint_sets(tok, index, {"t": "w34", "e": "w56", "s": "w57"}, context="w0 ", checked=["t", "e"])
    assert loose == three
    assert latent.disjoint_sets(tok, index, {"t": "w34", "e": "w56", "s": "w3"}, context="w0 ", checked=["e"]) \
        == {"t": [WORDS.index("w34")], "e": [WORDS.index("w5"), WORDS.index("w56")], "s": []}


def test_strip_shared():
    assert latent.strip_shared([1, 2, 3, 4], [2], [4, 9]) == [1, 3]
    assert latent.strip_shared([3, 1]) == [1, 3]


@pytest.mark.parametrize("n_items, n_sets, n_shots", [(20, 4, 4), (30, 2, 5), (150, 4, 4)])
def test_demo_assignment_never_shows_the_query(n_items, n_sets, n_shots):
    sets, choice = latent.demo_assignment(n_items, n_sets, n_shots, seed=1)
    assert len(sets) == n_sets and all(len(set(s)) == n_shots for s in sets)
    assert len(choice) == n_items and all(q not in sets[c] for q, c in enumerate(choice))
    assert latent.demo_assignment(n_items, n_sets, n_shots, seed=1) == (sets, choice)
    with pytest.raises(ValueError):
        latent.demo_assignment(n_shots, n_sets, n_shots)


def test_gather_set_probability_matches_mask():
    torch.manual_seed(0)
    probs = torch.rand(3, 4, 50)
    sets = [[5, 6], [], list(range(10, 20))]
    got = latent.gather_set_probability(probs, sets)
    torch.testing.assert_close(got, latent.set_probability(probs, latent.multi_hot(sets, 50)))


def test_lens_readout_matches_unembed_softmax(tiny_model):
    from lib.arch import Arch
    from lib.lens import unembed

    arch = Arch(tiny_model)
    torch.manual_seed(0)
    resid = torch.randn(5, arch.n_layers, arch.d_model)
    vocab = unembed(arch, resid[:1, :1]).shape[-1]
    sets = {"a": [[1, 2], [3], [], list(range(4, 30)), [7]], "b": [[0]] * 5}
    got = latent.lens_readout(arch, resid, sets, chunk=2)
    logits = unembed(arch, resid).double()
    probs = logits.softmax(-1)
    torch.testing.assert_close(got["entropy"].double(), latent.entropy_bits(logits), rtol=1e-4, atol=1e-4)
    for name, per_prompt in sets.items():
        want = latent.set_probability(probs, latent.multi_hot(per_prompt, vocab).double())
        torch.testing.assert_close(got[name].double(), want, rtol=1e-4, atol=1e-6)
    assert got["entropy"].device.type == "cpu"
