"""The one place that knows where each model family keeps its modules.

`Arch(model)` works on an nnsight-wrapped model (giving Envoys, usable inside a trace) and on a
plain transformers model (giving modules). Chapters and other lib modules ask it for
`layers`, `attn_out(i)`, `o_proj(i)` ... and never spell a family's module paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import torch


@dataclass(frozen=True)
class Family:
    """Attribute paths of one architecture family, from the causal-LM root and from a layer."""

    layers: str  # ModuleList of decoder blocks (root)
    embed: str  # token embedding (root)
    final_norm: str  # norm before the unembedding (root)
    unembed: str  # the output projection (root)
    attn: str  # attention block (layer)
    o_proj: str  # linear whose *input* is the concatenated per-head outputs (layer)
    mlp: str  # MLP block (layer)
    attn_out: str  # module whose output is what attention writes to the residual (layer)
    mlp_out: str  # module whose output is what the MLP writes to the residual (layer)
    down_proj: str  # the MLP's output projection: its input is the MLP's hidden activation (layer)
    conv1d: bool = False  # GPT-2 stores projection weights as [in, out] (Conv1D), not [out, in] (Linear)
    post_norms: bool = False  # Gemma 2/3, OLMo 2: attn_out and mlp_out are norms applied to each block's output


_LLAMA = Family(
    "model.layers", "model.embed_tokens", "model.norm", "lm_head",
    "self_attn", "self_attn.o_proj", "mlp", "self_attn", "mlp", "mlp.down_proj",
)
# Gemma 2/3 normalise each block's output before adding it to the residual stream.
_GEMMA = Family(
    "model.layers", "model.embed_tokens", "model.norm", "lm_head",
    "self_attn", "self_attn.o_proj", "mlp", "post_attention_layernorm", "post_feedforward_layernorm",
    "mlp.down_proj", post_norms=True,
)
# OLMo 2 has no norm before its sublayers: it normalises each block's output, as Gemma does after its own.
_OLMO2 = Family(
    "model.layers", "model.embed_tokens", "model.norm", "lm_head",
    "self_attn", "self_attn.o_proj", "mlp", "post_attention_layernorm", "post_feedforward_layernorm",
    "mlp.down_proj", post_norms=True,
)
_GPT2 = Family(
    "transformer.h", "transformer.wte", "transformer.ln_f", "lm_head",
    "attn", "attn.c_proj", "mlp", "attn", "mlp", "mlp.c_proj", conv1d=True,
)
_NEOX = Family(
    "gpt_neox.layers", "gpt_neox.embed_in", "gpt_neox.final_layer_norm", "lm_head",
    "attention", "attention.dense", "mlp", "attention", "mlp", "mlp.dense_4h_to_h",
)
FAMILIES: dict[str, Family] = {
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "olmo2": _OLMO2,
    "gemma2": _GEMMA, "gemma3_text": _GEMMA, "gpt2": _GPT2, "gpt_neox": _NEOX,
}


def first(output):
    """The hidden-state tensor of a module output that may be a tuple (attention returns one)."""
    return output[0] if isinstance(output, (tuple, list)) else output


class Arch:
    """Module lookup and shape facts for one model (nnsight-wrapped or plain)."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        model_type = self.config.model_type
        if model_type not in FAMILIES:
            raise ValueError(f"model family {model_type!r} is not supported; known: {sorted(FAMILIES)}")
        self.family = FAMILIES[model_type]
        self.n_layers: int = self.config.num_hidden_layers
        self.n_heads: int = self.config.num_attention_heads
        self.n_kv_heads: int = getattr(self.config, "num_key_value_heads", None) or self.n_heads
        self.d_model: int = self.config.hidden_size
        self.d_head: int = getattr(self.config, "head_dim", None) or self.d_model // self.n_heads
        self.vocab_size: int = self.config.vocab_size

    def _get(self, path: str, root=None):
        return attrgetter(path)(self.model if root is None else root)

    @property
    def layers(self):
        return self._get(self.family.layers)

    def layer(self, i: int):
        return self.layers[i]

    @property
    def embed(self):
        return self._get(self.family.embed)

    @property
    def final_norm(self):
        return self._get(self.family.final_norm)

    @property
    def unembed(self):
        return self._get(self.family.unembed)

    def attn(self, i: int):
        return self._get(self.family.attn, self.layer(i))

    def o_proj(self, i: int):
        return self._get(self.family.o_proj, self.layer(i))

    def mlp(self, i: int):
        return self._get(self.family.mlp, self.layer(i))

    def attn_out(self, i: int):
        return self._get(self.family.attn_out, self.layer(i))

    def mlp_out(self, i: int):
        return self._get(self.family.mlp_out, self.layer(i))

    @property
    def hf(self) -> torch.nn.Module:
        """The underlying transformers model (for calling modules outside a trace)."""
        return getattr(self.model, "_module", self.model)

    def hf_module(self, name: str, i: int | None = None) -> torch.nn.Module:
        """A plain module by role name ('final_norm', 'unembed', 'o_proj', ...)."""
        path = getattr(self.family, name)
        return attrgetter(path)(self.hf if i is None else attrgetter(self.family.layers)(self.hf)[i])

    def embed_scale(self) -> float:
        """Factor the embedding layer multiplies by (Gemma scales by sqrt(d_model))."""
        module = self.hf_module("embed")
        scale = getattr(module, "embed_scale", 1.0)
        return float(scale.item() if torch.is_tensor(scale) else scale)

    def softcap(self) -> float | None:
        return getattr(self.config, "final_logit_softcapping", None)

    # --- weights, in TransformerLens's orientation (input dimension first), as plain tensors -------------

    def _weight_in_out(self, module: torch.nn.Module) -> torch.Tensor:
        """A projection's weight as [in, out], whatever the family stores."""
        return module.weight if self.family.conv1d else module.weight.T

    def W_O(self, i: int) -> torch.Tensor:
        """Layer i's attention output weights per query head: [n_heads, d_head, d_model]."""
        return self._weight_in_out(self.hf_module("o_proj", i)).reshape(self.n_heads, self.d_head, self.d_model)

    def b_O(self, i: int) -> torch.Tensor | None:
        """Layer i's attention output bias [d_model], or None (Llama and Gemma have none)."""
        return self.hf_module("o_proj", i).bias

    def W_out(self, i: int) -> torch.Tensor:
        """Layer i's MLP output (down-) projection: [d_mlp, d_model]."""
        return self._weight_in_out(self.hf_module("down_proj", i))

    def b_out(self, i: int) -> torch.Tensor | None:
        """Layer i's MLP output bias [d_model], or None."""
        return self.hf_module("down_proj", i).bias

    @property
    def W_U(self) -> torch.Tensor:
        """The unembedding: [d_model, vocab] (logits = final_norm(resid) @ W_U, before any softcap)."""
        return self.hf_module("unembed").weight.T

    def down_proj(self, i: int):
        """Layer i's MLP output projection; its input is the MLP's hidden activation (site `mlp_hidden`)."""
        return self._get(self.family.down_proj, self.layer(i))

    def ln1_post(self, i: int) -> torch.nn.Module | None:
        """The norm on attention's output before it joins the residual stream (Gemma, OLMo 2; plain module), or None."""
        return self.hf_module("attn_out", i) if self.family.post_norms else None

    def ln2_post(self, i: int) -> torch.nn.Module | None:
        """The norm on the MLP's output before it joins the residual stream (Gemma, OLMo 2; plain module), or None."""
        return self.hf_module("mlp_out", i) if self.family.post_norms else None

    @property
    def norm_eps(self) -> float:
        """The epsilon of the model's norms (RMSNorm or LayerNorm)."""
        for key in ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"):
            if getattr(self.config, key, None) is not None:
                return float(getattr(self.config, key))
        raise ValueError(f"model family {self.config.model_type!r}: no norm epsilon in its config")

    def head_writes(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """What each query head of layer i writes through the output projection, bias excluded:
        z [..., n_heads, d_head] -> [..., n_heads, d_model] (on the weights' device and dtype)."""
        w = self.W_O(i)
        return torch.einsum("...hd,hdm->...hm", z.to(w.device, w.dtype), w)
