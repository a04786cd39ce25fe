"""Batched sweeps and ablations against the obvious slow reference: one forward pass per patch,
written with plain PyTorch hooks on the transformers model (no nnsight), on tiny Llama and Gemma 3."""

import pytest
import torch

from lib.ablation import (
    ablate,
    ablate_directions,
    ablate_heads,
    ablate_mlps,
    ablation_sets,
    ablation_sweep,
    mean_activations,
    patch,
)
from lib.arch import Arch, first
from lib.data import encode
from lib.interventions import SITES, Edit, Run, length_groups, run_with_edits, trim_padding
from lib.metrics import logit_diff_metric, prob_metric, top1_metric
from lib.models import load_hf
from lib.patching import patch_sweep, rome_windows, window_sweep

CLEAN = ["w5 w6 w7 w8 w9", "w20 w21 w22 w23"]  # different lengths: rows are left-padded
CORRUPT = ["w5 w40 w41 w8 w9", "w20 w50 w22 w23"]
ANSWER, WRONG = torch.tensor([10, 30]), torch.tensor([11, 31])


@pytest.fixture(scope="module")
def hf(tiny_dir):
    return load_hf(str(tiny_dir))[0]


def pairs(tokenizer, noise: bool):
    """(clean, corrupt) runs: swapped tokens, or ROME-style noise on positions 1-2 of the clean prompt."""
    enc = encode(tokenizer, CLEAN + CORRUPT)
    clean = {k: v[:2] for k, v in enc.items()}
    if not noise:
        return Run(clean), Run({k: v[2:] for k, v in enc.items()})
    delta = torch.zeros(2, enc["input_ids"].shape[1], 64)
    delta[:, -4:-2] = torch.randn(2, 2, 64, generator=torch.Generator().manual_seed(0))
    return Run(clean), Run(clean, delta)


class Hooks:
    """Read or overwrite one site of a plain transformers model with forward (pre-)hooks."""

    def __init__(self, hf, run: Run):
        self.arch, self.run, self.handles = Arch(hf), run, []

    def module(self, site, layer):
        if site == "resid_pre" or site == "resid_post":
            return self.arch.hf_module("layers")[layer]
        return self.arch.hf_module({"head": "o_proj"}.get(site, site), layer)

    def on(self, site, layer, fn):
        """fn(tensor) edits in place the site's tensor (heads viewed as [batch, pos, head, d_head])."""
        def pre(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            fn(x.view(*x.shape[:2], self.arch.n_heads, -1) if site == "head" else x)

        def post(module, args, output):
            fn(first(output))

        m = self.module(site, layer)
        if site in ("resid_pre", "head"):
            self.handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            self.handles.append(m.register_forward_hook(post))

    def logits(self):
        if self.run.embed_delta is not None:
            delta = self.run.embed_delta
            self.handles.append(self.arch.hf_module("embed").register_forward_hook(
                lambda m, a, out: out + delta))
        try:
            return self.arch.hf(**self.run.enc).logits[:, -1].float()
        finally:
            for h in self.handles:
                h.remove()


def ref_act(hf, run, site, layer):
    hooks, saved = Hooks(hf, run), {}
    hooks.on(site, layer, lambda x: saved.setdefault("x", x.clone()))
    hooks.logits()
    return saved["x"]


def ref_patched(hf, run, site, layer, index, value):
    hooks = Hooks(hf, run)

    def write(x):
        x[index] = value
    hooks.on(site, layer, write)
    return hooks.logits()


@torch.no_grad()
@pytest.mark.parametrize("direction,noise", [("denoise", True), ("noise", False)])  # both corruptions
@pytest.mark.parametrize("site", SITES)
def test_sweep_matches_one_pass_per_patch(tiny_model, hf, site, direction, noise):
    clean, corrupt = pairs(tiny_model.tokenizer, noise)
    metric = logit_diff_metric(ANSWER, WRONG)
    positions = [-1, -3] if site == "head" else None
    res = patch_sweep(tiny_model, clean, corrupt, site, metric, direction, positions=positions, chunk_size=7)
    source, target = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
    arch, seq = Arch(hf), clean.shape[1]
    n_index = arch.n_heads if site == "head" else seq
    assert res.values.shape == (2, arch.n_layers, n_index)
    for p in range(2):
        src, tgt = source.select(torch.tensor([p])), target.select(torch.tensor([p]))
        for layer in range(arch.n_layers):
            act = ref_act(hf, src, site, layer)
            for k in range(n_index):
                index = (0, [seq - 1, seq - 3], k) if site == "head" else (0, k)
                logits = ref_patched(hf, tgt, site, layer, index, act[index])
                want = metric(logits, torch.tensor([p]))[0]
                torch.testing.assert_close(res.values[p, layer, k], want, atol=1e-4, rtol=1e-4)
    for run, base in ((clean, res.clean), (corrupt, res.corrupt)):
        torch.testing.assert_close(base, metric(Hooks(hf, run).logits(), torch.arange(2)), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_per_pair_positions_layers_and_frame(tiny_model):
    clean, corrupt = pairs(tiny_model.tokenizer, noise=False)
    metric = prob_metric(ANSWER)
    full = patch_sweep(tiny_model, clean, corrupt, "resid_pre", metric)
    pos = torch.tensor([[4, 1], [2, 3]])
    part = patch_sweep(tiny_model, clean, corrupt, "resid_pre", metric, layers=[3, 1], positions=pos)
    torch.testing.assert_close(part.values, torch.stack([full.values[p][[3, 1]][:, pos[p]] for p in range(2)]))
    frame = part.frame
    assert len(frame) == 8 and set(frame.position) == {1, 2, 3, 4} and frame["head"].isna().all()
    assert frame.token.iloc[0] == tiny_model.tokenizer.convert_ids_to_tokens(clean.enc["input_ids"][0, 4].item())
    torch.testing.assert_close(torch.tensor(frame.recovery.to_numpy()), part.recovery().flatten())
    # restoring the whole clean residual stream at layer 0 recovers the clean run exactly
    torch.testing.assert_close(patch(tiny_model, corrupt, clean, [("resid_pre", 0)], last_only=True)[:, -1]
                               .softmax(-1)[torch.arange(2), ANSWER], full.clean)


@torch.no_grad()
def test_head_ablation_matches_reference_gqa(tiny_model, hf):
    run = Run(encode(tiny_model.tokenizer, CLEAN))
    means = mean_activations(tiny_model, run, "head")  # [layer, head, d_head]
    mask = run.enc["attention_mask"].bool()
    ref_mean = ref_act(hf, run, "head", 2)[mask].mean(0)
    torch.testing.assert_close(means[2], ref_mean, atol=1e-5, rtol=1e-4)
    for mode, value in (("zero", 0.0), ("mean", means[2, 3])):
        got = ablate_heads(tiny_model, run, [(2, 3)], mode=mode, last_only=True)[:, -1]
        want = ref_patched(hf, run, "head", 2, (slice(None), slice(None), 3), value)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # heads 2 and 3 share a key/value head under GQA, but each query head's output is its own
    a = ablate_heads(tiny_model, run, [(2, 2)], mode="zero", last_only=True)
    b = ablate_heads(tiny_model, run, [(2, 3)], mode="zero", last_only=True)
    assert not torch.allclose(a, b)


@torch.no_grad()
def test_mlp_ablation_per_row_positions_and_mixed_components(tiny_model, hf):
    run = Run(encode(tiny_model.tokenizer, CLEAN))
    means = mean_activations(tiny_model, run, "mlp_out")
    pos = torch.tensor([[3], [4]])
    got = ablate_mlps(tiny_model, run, [1], mode="mean", means=means, positions=pos, last_only=True)[:, -1]
    for row in range(2):
        want = ref_patched(hf, run.select(torch.tensor([row])), "mlp_out", 1, (0, pos[row, 0]), means[1])
        torch.testing.assert_close(got[row], want[0], atol=1e-4, rtol=1e-4)
    both = ablate(tiny_model, run, [("mlp_out", 3), ("head", 1, 0)], mode="zero", last_only=True)
    hooks = Hooks(hf, run)
    hooks.on("head", 1, lambda x: x[:, :, 0].zero_())
    hooks.on("mlp_out", 3, lambda x: x.zero_())
    torch.testing.assert_close(both[:, -1], hooks.logits(), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_direction_ablation_projects_out(tiny_model, hf):
    run = Run(encode(tiny_model.tokenizer, CLEAN))
    u = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    got = ablate_directions(tiny_model, run, 2, u, mode="zero", last_only=True)[:, -1]
    q = torch.linalg.qr(u.T)[0]
    hooks = Hooks(hf, run)
    hooks.on("resid_pre", 2, lambda x: x.sub_((x @ q) @ q.T))
    torch.testing.assert_close(got, hooks.logits(), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_ablation_sweep_matches_single_ablations(tiny_model):
    run = Run(encode(tiny_model.tokenizer, CLEAN))
    metric = prob_metric(ANSWER)
    res = ablation_sweep(tiny_model, run, "head", metric, mode="zero", positions=[-1], chunk_size=5)
    for layer, head in [(0, 0), (3, 2)]:
        logits = ablate_heads(tiny_model, run, [(layer, head)], mode="zero", positions=[-1], last_only=True)
        torch.testing.assert_close(res.values[:, layer, head], metric(logits[:, -1], torch.arange(2)),
                                   atol=1e-5, rtol=1e-4)
    assert res.recovery().isnan().all()


def test_rome_windows_follow_causal_trace():
    # kmeng01/rome: layers range(max(0, i - window // 2), min(num_layers, i - (-window // 2)))
    assert rome_windows(30, 6, [0, 3, 29]) == [[0, 1, 2], [0, 1, 2, 3, 4, 5], [26, 27, 28, 29]]
    assert rome_windows(18, 5, [4]) == [[2, 3, 4, 5, 6]]
    assert rome_windows(30, 6, [1, 2], exclude=[0]) == [[1, 2, 3], [1, 2, 3, 4]]


@torch.no_grad()
@pytest.mark.parametrize("direction,noise", [("denoise", True), ("noise", False)])
@pytest.mark.parametrize("site", ["mlp_out", "attn_out", "head"])
def test_window_sweep_matches_one_pass_per_window(tiny_model, hf, site, direction, noise):
    clean, corrupt = pairs(tiny_model.tokenizer, noise)
    metric = logit_diff_metric(ANSWER, WRONG)
    pos = torch.tensor([[3, 4], [2, 4]])  # per pair
    res = window_sweep(tiny_model, clean, corrupt, site, metric, window=2, centres=[0, 2, 3], exclude=[2],
                       direction=direction, positions=pos, heads=[1, 3] if site == "head" else None,
                       chunk_size=5)
    assert res.layers == [0, 2, 3] and res.windows == [[0], [1], [3]]
    source, target = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
    for p in range(2):
        src, tgt = source.select(torch.tensor([p])), target.select(torch.tensor([p]))
        for w, layers in enumerate(res.windows):
            for k in range(res.values.shape[2]):
                hooks = Hooks(hf, tgt)
                for layer in layers:
                    act = ref_act(hf, src, site, layer)
                    index = (0, pos[p], [1, 3][k]) if site == "head" else (0, pos[p, k])

                    def write(x, index=index, value=act[index]):
                        x[index] = value
                    hooks.on(site, layer, write)
                want = metric(hooks.logits(), torch.tensor([p]))[0]
                torch.testing.assert_close(res.values[p, w, k], want, atol=1e-4, rtol=1e-4)
    # a one-layer window is a plain patch
    one = window_sweep(tiny_model, clean, corrupt, "mlp_out", metric, window=1, positions=pos)
    plain = patch_sweep(tiny_model, clean, corrupt, "mlp_out", metric, positions=pos)
    torch.testing.assert_close(one.values, plain.values, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_ablation_sets_match_one_ablation_per_set(tiny_model):
    run = Run(encode(tiny_model.tokenizer, CLEAN))
    means = {"mlp_out": mean_activations(tiny_model, run, "mlp_out", positions=torch.tensor([[3], [4]]))}
    sets = [[("mlp_out", 1)], [("mlp_out", 0), ("mlp_out", 3)], [], [("mlp_out", 2), ("head", 1, 2)]]
    for metric in (prob_metric(ANSWER), top1_metric(ANSWER)):
        got = ablation_sets(tiny_model, run, sets, metric, means=means, positions=torch.tensor([[3], [4]]),
                            chunk_size=3)
        assert got.shape == (4, 2)
        for s, components in enumerate(sets):
            logits = ablate(tiny_model, run, components, means=means, positions=torch.tensor([[3], [4]]),
                            last_only=True)[:, -1]
            torch.testing.assert_close(got[s], metric(logits, torch.arange(2)), atol=1e-5, rtol=1e-4)


SHORT_LONG = ["w5 w6", "w20 w21 w22 w23 w24 w25 w26 w27 w28"]  # lengths far apart: two length groups
SHORT_LONG_CORRUPT = ["w5 w40", "w20 w50 w22 w23 w24 w25 w26 w27 w28"]


def test_length_groups_split_far_lengths_only():
    mask = torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert [g.tolist() for g in length_groups(mask)] == [[3], [0], [2], [1]]
    assert [g.tolist() for g in length_groups(mask, ratio=2.0)] == [[3, 0], [2, 1]]


@torch.no_grad()
@pytest.mark.parametrize("family", ["model", "gpt2"])
def test_trimmed_padding_keeps_logits_and_edit_positions(tiny_model, family, tmp_path):
    # The leading all-padding columns are dropped when only the last position is read: same logits as
    # the untrimmed run, with an edit at a positive and at a negative position (GPT-2: absolute positions).
    from lib.models import load_model
    from tests.tiny import save_tiny_model

    model = tiny_model if family == "model" else load_model(str(save_tiny_model("gpt2", tmp_path)), "cpu")
    enc = encode(model.tokenizer, SHORT_LONG)
    short = Run(enc).select(torch.tensor([0, 0]))  # rows padded on the left in every column but the last few
    seq = short.shape[1]
    assert trim_padding(short)[0].shape[1] < seq
    edits = [Edit("resid_pre", 1, torch.tensor([0]), torch.tensor([[seq - 2]]), torch.ones(1, 1, Arch(model).d_model)),
             Edit("mlp_out", 2, torch.tensor([1]), torch.tensor([[-1]]), torch.zeros(1, 1, Arch(model).d_model))]
    trimmed = run_with_edits(model, short, edits)[:, -1]
    full = run_with_edits(model, short, edits, last_only=False)[:, -1]
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(trimmed[0], trimmed[1])  # the edits did something


@torch.no_grad()
def test_sweeps_and_sets_over_length_groups_match_each_prompt_alone(tiny_model):
    # Prompts of far-apart lengths run in separate groups; each result equals the prompt swept alone (no padding).
    enc = encode(tiny_model.tokenizer, SHORT_LONG + SHORT_LONG_CORRUPT)
    clean, corrupt = Run({k: v[:2] for k, v in enc.items()}), Run({k: v[2:] for k, v in enc.items()})
    metric = logit_diff_metric(ANSWER, WRONG)
    res = patch_sweep(tiny_model, clean, corrupt, "resid_pre", metric, positions=[-1, -2])
    sets = [[], [("mlp_out", 1)], [("mlp_out", 0), ("head", 2, 1)]]
    means = {"mlp_out": mean_activations(tiny_model, clean, "mlp_out"), "head": mean_activations(tiny_model, clean, "head")}
    got_sets = ablation_sets(tiny_model, clean, sets, metric, means=means, positions=[-1])
    for p in range(2):
        alone = encode(tiny_model.tokenizer, [SHORT_LONG[p], SHORT_LONG_CORRUPT[p]])
        one = patch_sweep(tiny_model, Run({k: v[:1] for k, v in alone.items()}), Run({k: v[1:] for k, v in alone.items()}),
                          "resid_pre", logit_diff_metric(ANSWER[p:p + 1], WRONG[p:p + 1]), positions=[-1, -2])
        torch.testing.assert_close(res.values[p], one.values[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(res.clean[p], one.clean[0], atol=1e-4, rtol=1e-4)
        single = encode(tiny_model.tokenizer, [SHORT_LONG[p]])
        want = ablation_sets(tiny_model, single, sets, logit_diff_metric(ANSWER[p:p + 1], WRONG[p:p + 1]),
                             means=means, positions=[-1])
        torch.testing.assert_close(got_sets[:, p], want[:, 0], atol=1e-4, rtol=1e-4)
