"""One-direction distributed alignment search (DAS) at the last token, made cheap with a prefix cache.

Every patch in this module replaces an activation at the *last* token only. Everything before the last
token is then the same in the patched and the unpatched run, so `LastToken` runs the prompts' prefix
once and keeps its keys and values; a patched run is one token per row, and it starts at the patched
layer (the last token's residual stream entering that layer is stored once; the earlier layers are
skipped). A DAS step on 64 pairs then costs a single-token forward and backward through the layers
after the patch, a small fraction of a full forward and backward pass.

    base, source = LastToken(model, base_enc, io, s), LastToken(model, source_enc, io, s)
    src = source.read("mlp_hidden", 14)                                # [pair, d_ff] at the last token
    v, losses = fit_direction(base, src, "mlp_hidden", 14, steps=60)   # one unit vector
    ld = base.patched("mlp_hidden", 14, src, basis=v[:, None])         # [pair] patched logit difference
    fldd(ld, base.clean_ld)                                            # 1 - mean patched / mean clean

Sites (TransformerLens names, as in lib.patching): resid_pre, attn_out, mlp_hidden (the input of the
MLP's down-projection, d_ff wide), mlp_out, resid_post.

Taught in chapter 11 (the subspace activation-patching illusion).
"""

from __future__ import annotations

from operator import attrgetter

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lib.arch import Arch, first

SITES = ("resid_pre", "attn_out", "mlp_hidden", "mlp_out", "resid_post")


class _Skip(torch.nn.Module):
    """Stands in for a decoder layer before the patched one: its output is its input."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def _hook(arch: Arch, site: str, layer: int, fn):
    """Register fn(x [rows, 1, d]) -> new x (or None) on `site` of the plain model; returns the handle."""
    def pre(module, args, kwargs):
        if args:
            out = fn(args[0])
            return None if out is None else ((out,) + tuple(args[1:]), kwargs)
        out = fn(kwargs["hidden_states"])
        return None if out is None else (args, {**kwargs, "hidden_states": out})

    def post(module, args, output):
        out = fn(first(output))
        if out is None or not isinstance(output, (tuple, list)):
            return out
        return (out,) + tuple(output[1:])

    if site == "resid_pre":
        return arch.hf_module("layers")[layer].register_forward_pre_hook(pre, with_kwargs=True)
    if site == "mlp_hidden":
        return arch.hf_module("down_proj", layer).register_forward_pre_hook(pre, with_kwargs=True)
    module = {"resid_post": lambda: arch.hf_module("layers")[layer], "attn_out": lambda: arch.hf_module("attn_out", layer),
              "mlp_out": lambda: arch.hf_module("mlp_out", layer)}.get(site)
    if module is None:
        raise ValueError(f"site: expected one of {SITES}, got {site!r}")
    return module().register_forward_hook(post)


def interchange(x: Float[Tensor, "rows d"], source: Float[Tensor, "rows d"],
                basis: Float[Tensor, "d r"] | None) -> Float[Tensor, "rows d"]:
    """x with its component in span(basis) (orthonormal columns) replaced by source's; all of it if basis is None."""
    if basis is None:
        return source
    return x + ((source - x) @ basis) @ basis.T


class LastToken:
    """Prompts run once up to their last token; then many cheap last-token runs with one site patched.

    `answer`, `wrong` [batch] are the token ids whose logit difference is the metric. Rows are left-padded
    `encode` batches (position ids follow the full forward's: 0 .. seq-1 for every row).
    """

    def __init__(self, model, enc: dict, answer: Int[Tensor, " batch"], wrong: Int[Tensor, " batch"]):
        self.arch = arch = Arch(model)
        hf = arch.hf
        self.device = next(hf.parameters()).device
        self.body = attrgetter(arch.family.layers.rsplit(".", 1)[0])(hf)  # the decoder without the unembedding
        ids, self.mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        self.last_ids, self.n = ids[:, -1:], ids.shape[0]
        self.position = torch.full((1, 1), ids.shape[1] - 1, device=self.device)
        with torch.no_grad():
            self.cache = self.body(input_ids=ids[:, :-1], attention_mask=self.mask[:, :-1], use_cache=True).past_key_values
        self.snapshot = [(lay.keys, lay.values, getattr(lay, "cumulative_length", None)) for lay in self.cache.layers]
        w_u = arch.W_U.T  # [vocab, d_model]
        self.readout = torch.stack([w_u[answer.to(self.device)], w_u[wrong.to(self.device)]], 1).detach()
        self.resid_pre = self._resid_pre()  # [batch, layer, d_model], the last token entering each layer
        with torch.no_grad():
            self.clean_ld = self.run(0, lambda x: None, "resid_pre").cpu()

    def _restore(self, rows: Tensor | None, start: int = 0) -> None:
        """Put the prefix cache back after a run appended to it: only `rows` of it (repeats allowed) from
        layer `start` on; the skipped layers' entries stay whole (only their length is ever read)."""
        for i, (lay, (keys, values, length)) in enumerate(zip(self.cache.layers, self.snapshot)):
            lay.keys, lay.values = (keys, values) if rows is None or i < start else (keys[rows], values[rows])
            if length is not None:
                lay.cumulative_length = length

    def _resid_pre(self) -> Tensor:
        store = [None] * self.arch.n_layers
        handles = [self.arch.hf_module("layers")[i].register_forward_pre_hook(
            lambda m, a, k, i=i: store.__setitem__(i, (a[0] if a else k["hidden_states"])[:, -1].detach()),
            with_kwargs=True) for i in range(self.arch.n_layers)]
        try:
            with torch.no_grad():
                self._restore(None)
                self.body(input_ids=self.last_ids, attention_mask=self.mask, position_ids=self.position,
                          past_key_values=self.cache, use_cache=True)
        finally:
            for h in handles:
                h.remove()
        return torch.stack(store, 1)

    def run(self, layer: int, fn, site: str, rows: Tensor | None = None) -> Float[Tensor, " rows"]:
        """Logit difference of a last-token run from `layer` on, with fn(x [rows, 1, d]) applied at `site`
        of `layer` (fn returns the new activation, or None to leave it); gradients flow where fn's do."""
        layers = self.arch.hf_module("layers")
        kept = [layers[i] for i in range(layer)]
        sel = slice(None) if rows is None else rows.to(self.device)
        self._restore(None if rows is None else sel, layer)
        handle = _hook(self.arch, site, layer, fn)
        try:
            for i in range(layer):
                layers[i] = _Skip()
            hidden = self.body(inputs_embeds=self.resid_pre[sel, layer][:, None], attention_mask=self.mask[sel],
                               position_ids=self.position, past_key_values=self.cache,
                               use_cache=True).last_hidden_state[:, -1]
        finally:
            for i, module in enumerate(kept):
                layers[i] = module
            handle.remove()
        logits = torch.einsum("rd,rkd->rk", hidden, self.readout[sel])
        cap = self.arch.softcap()
        if cap:
            logits = cap * torch.tanh(logits / cap)
        return (logits[:, 0] - logits[:, 1]).float()  # float32 whatever the model's dtype

    @torch.no_grad()
    def read(self, site: str, layer: int) -> Float[Tensor, "batch d"]:
        """The last token's activation at `site` of `layer`, unpatched (on the model's device)."""
        return self.read_layers(site, [layer])[:, 0]

    @torch.no_grad()
    def read_layers(self, site: str, layers: list[int]) -> Float[Tensor, "batch layer d"]:
        """The last token's activation at `site` of each of `layers`, from one unpatched run."""
        store = {}
        handles = [_hook(self.arch, site, i, lambda x, i=i: store.__setitem__(i, x[:, -1].detach()))
                   for i in layers]
        try:
            self.run(min(layers), lambda x: None, site)
        finally:
            for h in handles:
                h.remove()
        return torch.stack([store[i] for i in layers], 1).float()

    def patched(self, site: str, layer: int, source: Float[Tensor, "rows d"], basis: Tensor | None = None,
                rows: Tensor | None = None) -> Float[Tensor, " rows"]:
        """Logit difference with the last token's `site` (its span(basis) part, if given) taken from `source`."""
        source = source.to(self.device)
        b = None if basis is None else basis.to(self.device, source.dtype)

        def swap(x):
            return interchange(x[:, -1], source.to(x.dtype), b)[:, None]
        return self.run(layer, swap, site, rows)

    def patched_along(self, site: str, layer: int, source: Float[Tensor, "rows d"],
                      directions: Float[Tensor, "rows d"], rows: Tensor | None = None) -> Float[Tensor, " rows"]:
        """`patched` with each row's own unit direction (one batch for many directions: a null of random ones)."""
        source, u = source.to(self.device), directions.to(self.device, source.dtype)

        def swap(x):
            x = x[:, -1]
            return (x + ((source - x) * u).sum(-1, keepdim=True) * u)[:, None]
        return self.run(layer, swap, site, rows)

    def gradient(self, site: str, layer: int) -> Float[Tensor, "batch d"]:
        """d(logit difference)/d(activation) at `site` of `layer`, last token, per row."""
        leaf = []

        def grab(x):
            leaf.append(x.detach().requires_grad_(True))
            return leaf[0]
        with torch.enable_grad():
            ld = self.run(layer, grab, site)
            return torch.autograd.grad(ld.sum(), leaf[0])[0][:, -1].float()


def fldd(patched: Float[Tensor, " n"], clean: Float[Tensor, " n"]) -> float:
    """Fractional logit-difference decrease, 1 - mean(patched) / mean(clean) (Makelov et al.): 1 = the
    logit difference is gone, above 1 = it flipped sign, 0 = no change."""
    return float(1 - patched.detach().float().mean() / clean.detach().float().mean())


def fit_direction(base: LastToken, source: Float[Tensor, "batch d"], site: str, layer: int, steps: int = 60,
                  lr: float = 0.05, seed: int = 0, init: Tensor | None = None, rows: Tensor | None = None,
                  progress=None) -> tuple[Float[Tensor, " d"], list[float]]:
    """DAS with one direction: the unit vector v whose interchange (base's coordinate along v replaced by
    the source's) lowers the base's mean logit difference most, by Adam on v; returns v (CPU) and the
    loss (mean patched / mean clean logit difference) per step; `rows` fits on those rows of `base` and
    `source` (repeats allowed: a bootstrap refit), `init` starts from a given vector. Taught in chapter 11."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(source.shape[-1], generator=gen) if init is None else init.float().cpu()
    v = (start / start.norm()).to(base.device).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    source = source if rows is None else source[rows.to(source.device)]
    clean = (base.clean_ld if rows is None else base.clean_ld[rows.cpu()]).mean().to(base.device)
    losses = []
    for _ in range(steps):
        with torch.enable_grad():
            loss = base.patched(site, layer, source, (v / v.norm())[:, None], rows).mean() / clean
            v.grad = torch.autograd.grad(loss, [v])[0]
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress.update(1)
    return (v / v.norm()).detach().cpu(), losses


def first_order_direction(base: LastToken, source: Float[Tensor, "batch d"], site: str, layer: int
                          ) -> tuple[Float[Tensor, " d"], Float[Tensor, " d"], Float[Tensor, " d"]]:
    """The direction a first-order (Taylor) model of the interchange picks: a patch along unit v changes
    the logit difference by about (v . delta)(v . grad), largest in size when v bisects the mean feature
    difference delta = source - base and minus the mean gradient. Returns (v, delta, grad), on the CPU."""
    delta = (source.to(base.device) - base.read(site, layer)).mean(0)
    grad = base.gradient(site, layer).mean(0)
    v = delta / delta.norm() - grad / grad.norm()
    return (v / v.norm()).cpu(), delta.cpu(), grad.cpu()


def rowspace_basis(weight: Float[Tensor, "out d"], tol: float = 1e-6) -> Float[Tensor, "d r"]:
    """Orthonormal basis of the row space of `weight` (the inputs it does not send to zero)."""
    u, s, vh = torch.linalg.svd(weight.detach().float().cpu(), full_matrices=False)
    return vh[s > tol * s.max()].T


def rowspace_fraction(v: Float[Tensor, " d"], basis: Float[Tensor, "d r"]) -> float:
    """Fraction of v's norm inside span(basis): |P v| / |v| (a random unit vector gives about sqrt(r / d))."""
    v = v.float().cpu()
    return float((basis.T @ v).norm() / v.norm())


def split_rowspace(v: Float[Tensor, " d"], basis: Float[Tensor, "d r"]) -> tuple[Tensor, Tensor]:
    """v's component in span(basis) and the rest (the weight's nullspace when basis spans its row space)."""
    v = v.float().cpu()
    row = basis @ (basis.T @ v)
    return row, v - row


def down_proj_rowspace(arch: Arch, layer: int) -> Float[Tensor, "d_mlp d_model"]:
    """Orthonormal basis of the MLP hidden directions that layer `layer`'s down-projection does not send to
    zero (its row space, d_model of d_mlp dims); the rest of the hidden space is its nullspace."""
    return rowspace_basis(arch.W_out(layer).T)


def norm_gain(arch: Arch, layer: int) -> Float[Tensor, " d_model"]:
    """Per-dimension gain of the norm in front of layer `layer`'s attention, read off the module itself
    (RMSNorm maps sqrt(d) e_i to gain_i sqrt(d) e_i: Llama's weight, Gemma's 1 + weight); ones if none."""
    norm = arch.ln1(layer)
    if norm is None:
        return torch.ones(arch.d_model)
    param = next(norm.parameters())
    eye = torch.eye(arch.d_model, device=param.device, dtype=param.dtype) * arch.d_model ** 0.5
    with torch.no_grad():
        return (norm(eye).diagonal() / arch.d_model ** 0.5).float().cpu()


def query_basis(arch: Arch, heads: list[tuple[int, int]]) -> Float[Tensor, "d_model r"]:
    """Orthonormal basis of the residual-stream directions that `heads`' queries read: the row space of
    their W_Q after the gain of the norm in front of them (what TransformerLens folds into W_Q)."""
    rows = [(arch.W_Q(layer)[head].detach().float().cpu() * norm_gain(arch, layer)[:, None]).T
            for layer, head in heads]
    return rowspace_basis(torch.cat(rows))
