import torch

from lib.arch import Arch
from lib.models import load_hf
from lib.steering import (
    Generation,
    continuation_perplexity,
    cosine_scores,
    diff_of_means,
    scenario_centered_means,
    steered_generate,
    steered_logits,
    window_steered_generate,
    window_steered_logits,
)

PROMPTS = ["w5 w6 w7 w8", "w20 w21 w22 w23", "w30 w31 w32 w33"]  # same length: no padding in references
LAYER = 1


def test_scenario_centered_means_matches_loop():
    torch.manual_seed(0)
    resid = torch.randn(5, 3, 2, 4)
    expected = torch.zeros(3, 2, 4)
    for s in range(5):
        scenario_mean = sum(resid[s, e] for e in range(3)) / 3
        for e in range(3):
            expected[e] += (resid[s, e] - scenario_mean) / 5
    torch.testing.assert_close(scenario_centered_means(resid), expected)


def test_diff_of_means_and_cosine_scores():
    torch.manual_seed(0)
    states, labels = torch.randn(10, 3, 4), torch.tensor([1, 0] * 5).bool()
    expected = states[0::2].mean(0) - states[1::2].mean(0)
    torch.testing.assert_close(diff_of_means(states, labels), expected)
    dirs, center = torch.randn(2, 3, 4), torch.randn(3, 4)
    scores = cosine_scores(states, dirs, center)
    x = states[4, 2] - center[2]
    torch.testing.assert_close(scores[4, 2, 1], torch.dot(x, dirs[1, 2]) / x.norm() / dirs[1, 2].norm())


def hooked(hf, layer: int, vector: torch.Tensor):
    """Slow reference: a plain forward hook adding `vector` to the decoder layer's output."""
    return Arch(hf).hf_module("layers")[layer].register_forward_hook(lambda m, a, out: out + vector)


def reference_vectors(d_model: int) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(len(PROMPTS), d_model) * 3


@torch.no_grad()
def test_steered_logits_matches_hook(tiny_model, tiny_dir):
    hf, tok = load_hf(str(tiny_dir))
    vectors = reference_vectors(Arch(hf).d_model)
    got = steered_logits(tiny_model, PROMPTS, LAYER, vectors, batch_size=2)
    for r, prompt in enumerate(PROMPTS):
        handle = hooked(hf, LAYER, vectors[r])
        try:
            want = hf(**tok(prompt, return_tensors="pt")).logits[0, -1]
        finally:
            handle.remove()
        torch.testing.assert_close(got[r], want, atol=1e-4, rtol=1e-4)
    zero = steered_logits(tiny_model, PROMPTS[:1], LAYER, torch.zeros(1, vectors.shape[1]))
    torch.testing.assert_close(zero[0], hf(**tok(PROMPTS[0], return_tensors="pt")).logits[0, -1],
                               atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_steered_generate_matches_hooked_generate(tiny_model, tiny_dir):
    hf, tok = load_hf(str(tiny_dir))
    vectors = reference_vectors(Arch(hf).d_model)
    (gen,) = steered_generate(tiny_model, PROMPTS, LAYER, vectors, max_new_tokens=5)
    for r, prompt in enumerate(PROMPTS):
        handle = hooked(hf, LAYER, vectors[r])
        try:
            want = hf.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=5, do_sample=False,
                               pad_token_id=tok.pad_token_id)[0]
        finally:
            handle.remove()
        torch.testing.assert_close(gen.ids[r, : len(want)], want)


@torch.no_grad()
def test_continuation_perplexity_matches_manual(tiny_model, tiny_dir):
    hf, tok = load_hf(str(tiny_dir))
    ids = tok(["w5 w6 w7 w8 w9 w10", "w1 w40 w41 w42 w43 w44"], return_tensors="pt", add_special_tokens=False).input_ids
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])  # second row: left pad then a 2-token prompt
    gen = Generation(ids, mask, ["", ""])
    got = continuation_perplexity(tiny_model, gen)
    first = hf(ids[:1]).logits[0].log_softmax(-1)
    nll = -sum(first[t - 1, ids[0, t]] for t in range(3, 6)) / 3
    torch.testing.assert_close(got[0], torch.exp(nll), atol=1e-4, rtol=1e-4)
    second = hf(ids[1:, 1:]).logits[0].log_softmax(-1)  # the same row without its pad
    nll = -sum(second[t - 1, ids[1, t + 1]] for t in range(2, 5)) / 3
    torch.testing.assert_close(got[1], torch.exp(nll), atol=1e-4, rtol=1e-4)


def rms_hooked_logits(hf, tok, prompt: str, vectors: list, last: int) -> torch.Tensor:
    """Slow reference: plain hooks on layers 0..len(vectors)-1 add vectors[i] times each of the last
    `last` states' RMS; the last-token logits."""
    def add(vector):
        def hook(module, args, out):
            out = out.clone()
            seg = out[:, -last:]
            out[:, -last:] = seg + vector * seg.pow(2).mean(-1, keepdim=True).sqrt()
            return out
        return hook

    layers = Arch(hf).hf_module("layers")
    handles = [layers[i].register_forward_hook(add(v)) for i, v in enumerate(vectors)]
    try:
        return hf(**tok(prompt, return_tensors="pt")).logits[0, -1]
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def test_window_steered_logits_matches_hooks(tiny_model, tiny_dir):
    """Vectors added at the last two positions of layers 0-1, scaled by each state's RMS, as plain hooks do."""
    hf, tok = load_hf(str(tiny_dir))
    vectors = reference_vectors(Arch(hf).d_model) / 3
    got = window_steered_logits(tiny_model, PROMPTS, [0, 1], vectors, positions=[-2, -1], rms=True, batch_size=2)

    for r, prompt in enumerate(PROMPTS):
        torch.testing.assert_close(got[r], rms_hooked_logits(hf, tok, prompt, [vectors[r]] * 2, last=2),
                                   atol=1e-4, rtol=1e-4)
    plain = window_steered_logits(tiny_model, PROMPTS, [LAYER], vectors, positions=[-1], rms=False)
    for r, prompt in enumerate(PROMPTS):
        handle = Arch(hf).hf_module("layers")[LAYER].register_forward_hook(
            lambda m, a, out, v=vectors[r]: torch.cat([out[:, :-1], out[:, -1:] + v], 1))
        try:
            want = hf(**tok(prompt, return_tensors="pt")).logits[0, -1]
        finally:
            handle.remove()
        torch.testing.assert_close(plain[r], want, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_window_steering_per_layer_vectors_and_generation(tiny_model, tiny_dir):
    """Per-layer vectors at the last position: logits match hooks, and generation's first token is
    the steered logits' argmax (the prefill step is steered the same way)."""
    hf, tok = load_hf(str(tiny_dir))
    d = Arch(hf).d_model
    torch.manual_seed(2)
    vectors = torch.randn(len(PROMPTS), 2, d)
    got = window_steered_logits(tiny_model, PROMPTS, [0, 1], vectors, positions=[-1], rms=True)
    for r, prompt in enumerate(PROMPTS):
        torch.testing.assert_close(got[r], rms_hooked_logits(hf, tok, prompt, list(vectors[r]), last=1),
                                   atol=1e-4, rtol=1e-4)
    texts = window_steered_generate(tiny_model, PROMPTS, [0, 1], vectors, max_new_tokens=1)
    assert texts == tok.batch_decode(got.argmax(-1)[:, None], skip_special_tokens=True)
