"""Every model family `lib.arch` lists, checked on a tiny random-weight model against references that do
not go through `Arch`: transformers' own `output_hidden_states` and `output_attentions`, and plain
forward hooks on modules found by name. A wrong path or orientation in the `Family` table fails here."""

import pytest
import torch

from lib.arch import FAMILIES as ARCH_FAMILIES
from lib.arch import Arch
from lib.attention import attention_patterns
from lib.data import encode
from lib.interventions import Edit, collect, run_with_edits
from lib.models import load_model
from tests.tiny import FAMILIES, save_tiny_model, tiny_config, tiny_tokenizer

PROMPTS = ["w5 w6 w7 w8 w9 w10", "w20 w21 w22"]  # different lengths: the second row is left-padded
TOL = dict(atol=1e-4, rtol=1e-4)


def test_every_listed_family_has_a_tiny_model():
    types = {tiny_config(f).model_type for f in FAMILIES}
    assert types == set(ARCH_FAMILIES), f"untested families: {set(ARCH_FAMILIES) - types}"


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request, tmp_path_factory):
    """(nnsight model, plain transformers model, encoded prompts) of one tiny family."""
    directory = save_tiny_model(request.param, tmp_path_factory.mktemp(request.param))
    model = load_model(str(directory))
    tokenizer = tiny_tokenizer()  # transformers maps some families (Qwen2) to their own tokenizer class
    tokenizer.padding_side = "left"
    enc = encode(tokenizer, PROMPTS)
    return model, Arch(model).hf, enc


def forward(hf, enc, **kwargs):
    """A plain forward pass with positions counted from each row's first real token, as nnsight's
    wrapper counts them (a plain call would count left padding, which shifts GPT-2's absolute positions)."""
    positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return hf(**enc, position_ids=positions, **kwargs)


def reference(hf, enc):
    return forward(hf, enc, output_hidden_states=True)


def hooked(hf, module, enc, want_input: bool):
    """The input (or output) of a plain module during one forward pass, with a plain hook."""
    store = []
    if want_input:
        handle = module.register_forward_pre_hook(lambda m, args: store.append(args[0].detach()))
    else:
        handle = module.register_forward_hook(
            lambda m, args, out: store.append((out[0] if isinstance(out, tuple) else out).detach()))
    try:
        forward(hf, enc)
    finally:
        handle.remove()
    return store[0]


def test_residual_stream_matches_output_hidden_states(family_model):
    model, hf, enc = family_model
    hidden = reference(hf, enc).hidden_states  # embeddings, then after each layer; the last one normed
    arch = Arch(model)
    real = enc["attention_mask"].bool()
    pre, _ = collect(model, enc, "resid_pre")
    post, _ = collect(model, enc, "resid_post")
    for i in range(arch.n_layers):
        torch.testing.assert_close(pre[:, i][real], hidden[i][real], **TOL)
    for i in range(arch.n_layers - 1):
        torch.testing.assert_close(post[:, i][real], hidden[i + 1][real], **TOL)
    with torch.no_grad():
        final = arch.hf_module("final_norm")(post[:, -1])
    torch.testing.assert_close(final[real], hidden[-1][real], **TOL)


def test_sublayer_writes_sum_to_the_residual_update(family_model):
    model, hf, enc = family_model
    real = enc["attention_mask"].bool()
    pre, _ = collect(model, enc, "resid_pre")
    post, _ = collect(model, enc, "resid_post")
    attn, _ = collect(model, enc, "attn_out")
    mlp, _ = collect(model, enc, "mlp_out")
    update = (attn + mlp - (post - pre)).transpose(1, 2)  # [batch, pos, layer, d_model]
    torch.testing.assert_close(update[real], torch.zeros_like(update[real]), **TOL)


def test_logits_are_the_final_norm_through_W_U(family_model):
    model, hf, enc = family_model
    out = reference(hf, enc)
    arch = Arch(model)
    logits = out.hidden_states[-1] @ arch.W_U
    bias = arch.hf_module("unembed").bias
    logits = logits if bias is None else logits + bias
    if arch.softcap():
        logits = torch.tanh(logits / arch.softcap()) * arch.softcap()
    torch.testing.assert_close(logits, out.logits, **TOL)


def test_attention_patterns_match_output_attentions(family_model):
    model, hf, enc = family_model
    pattern = attention_patterns(model, enc)  # [batch, layer, head, q, k]
    hf.config._attn_implementation = "eager"
    try:
        attentions = forward(hf, enc, output_attentions=True).attentions
    finally:
        hf.config._attn_implementation = model.config._attn_implementation
    mask = enc["attention_mask"].float()
    expected = torch.stack(attentions, 1) * mask[:, None, None, :, None] * mask[:, None, None, None, :]
    torch.testing.assert_close(pattern, expected, **TOL)


def test_head_writes_through_W_O_sum_to_the_output_projection(family_model):
    model, hf, enc = family_model
    arch = Arch(model)
    for i in (0, arch.n_layers - 1):
        z = hooked(hf, arch.hf_module("o_proj", i), enc, want_input=True)
        out = hooked(hf, arch.hf_module("o_proj", i), enc, want_input=False)
        writes = arch.head_writes(z.unflatten(-1, (arch.n_heads, arch.d_head)), i).sum(-2)
        bias = arch.b_O(i)
        torch.testing.assert_close(writes if bias is None else writes + bias, out, **TOL)
        if arch.ln1_post(i) is not None:  # the block's own norm turns the projection into what attention writes
            written = hooked(hf, arch.hf_module("attn_out", i), enc, want_input=False)
            with torch.no_grad():
                torch.testing.assert_close(arch.ln1_post(i)(out), written, **TOL)


def test_mlp_hidden_through_W_out_is_the_mlp_output(family_model):
    model, hf, enc = family_model
    arch = Arch(model)
    for i in (0, arch.n_layers - 1):
        hidden = hooked(hf, arch.hf_module("down_proj", i), enc, want_input=True)
        out = hooked(hf, arch.hf_module("down_proj", i), enc, want_input=False)
        bias = arch.b_out(i)
        expected = hidden @ arch.W_out(i)
        torch.testing.assert_close(expected if bias is None else expected + bias, out, **TOL)
        mlp = hooked(hf, arch.hf_module("mlp_out", i), enc, want_input=False)
        post = arch.ln2_post(i)
        with torch.no_grad():
            torch.testing.assert_close(out if post is None else post(out), mlp, **TOL)


def test_a_head_edit_changes_only_that_heads_contribution(family_model):
    """Zeroing one head's z through the edit engine equals subtracting its W_O write (a plain-hook reference)."""
    model, hf, enc = family_model
    arch = Arch(model)
    layer, head = arch.n_layers - 1, 1
    batch, seq = enc["input_ids"].shape
    pos = torch.arange(seq)[None].expand(batch, -1)
    edit = Edit("head", layer, torch.arange(batch), pos, torch.zeros(batch, seq, arch.d_head),
                heads=torch.full((batch,), head))
    edited = run_with_edits(model, enc, [edit], last_only=False)

    def drop_head(module, args):
        z = args[0].clone().unflatten(-1, (arch.n_heads, arch.d_head))
        z[..., head, :] = 0
        return (z.flatten(-2),) + args[1:]

    handle = arch.hf_module("o_proj", layer).register_forward_pre_hook(drop_head)
    try:
        expected = forward(hf, enc).logits
    finally:
        handle.remove()
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(edited[real], expected[real], **TOL)
