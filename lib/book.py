"""One setup call for every chapter: validate parameters, seed, load the model, set the plot style.

    ch = start("01_logit_lens", model_name=model_name, device=device, seed=seed, n_prompts=n_prompts)
    ch.model, ch.arch, ch.tokenizer   # nnsight model, module adapter, tokenizer
    ch.claim(key, claim, source=..., value=..., ci=..., null=..., bar=...)  # one row, verdict on the interval
    ch.glue("name", value)    # a measured number for the markdown: {glue:}`name`
    ch.claims_table(items="143 prompts")  # the nbval-checked results table (lib.claims)
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lib import claims as claims_lib
from lib import params as P
from lib import plots
from lib.arch import Arch
from lib.data import DataError
from lib.models import load_model, weights_description

ROOT = Path(__file__).resolve().parent.parent


def _short_parameter_errors() -> None:
    """In a notebook, show a ParameterError or DataError as its one line instead of a traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def one_line(shell, etype, value, tb, tb_offset=None):
        shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])

    shell.set_custom_exc((P.ParameterError, DataError), one_line)


_short_parameter_errors()


def _number(value):
    """Plain Python numbers from tensors and numpy scalars; other values unchanged."""
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return value


class _Glued:
    """A glued text: its plain-text form is the text itself, without quotes."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def glue(name: str, text: str) -> None:
    """myst-nb's glue, without needing myst-nb in the kernel: a hidden output the book's markdown reads."""
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is None:
        return
    bundle, metadata = format_display_data(_Glued(text))
    prefix = "application/papermill.record/"  # myst-nb's marker for a glued value not shown in place
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Chapter:
    """What a chapter works with: its parameters, the model, and the claims it records."""

    name: str
    params: dict
    model: object
    device: str
    remote: bool = False
    toy: bool = False
    started: float = field(default_factory=time.perf_counter)
    stamp_line: str = ""
    claims: list = field(default_factory=list)
    measurements: dict = field(default_factory=dict)

    @property
    def arch(self) -> Arch:
        return Arch(self.model)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def model_name(self) -> str:
        return self.params["model_name"]

    def check_layer(self, name: str, value: int) -> int:
        """Validate a layer parameter against this model's depth; returns it non-negative."""
        return P.check_layer(name, value, self.arch.n_layers)

    @property
    def half(self) -> bool:
        """Whether the model runs in bfloat16 or float16 (`dtype`)."""
        return self.params.get("dtype", "float32") != "float32"

    def assert_close(self, actual, expected, atol: float = 1e-5, rtol: float = 1.3e-6) -> None:
        """A chapter's check that its written-out computation equals lib's (or the model's own), compared
        as float32 on the CPU. `atol`/`rtol` are the float32 tolerances; in half precision (bfloat16 keeps
        about 3 significant digits, and a batch's shape changes the rounding) the check is loosened to 5%
        of each value plus 5% of the largest |expected| entry, which still catches a wrong computation."""
        actual = torch.as_tensor(actual).detach().float().cpu()
        expected = torch.as_tensor(expected).detach().float().cpu()
        if self.half:
            atol = max(atol, 0.05 * float(expected.abs().max()) if expected.numel() else 0.0)
            rtol = max(rtol, 0.05)
        torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)

    def measure(self, **values) -> None:
        """Record named measurements for the run's JSON record."""
        self.measurements.update(values)

    def claim(self, key: str, claim: str, *, source: str, paper: str, value, ci, null, null_label: str,
              bar, above: bool = True, bar_label: str = "", reason: str | None = None,
              null_comparable: bool = False) -> claims_lib.Claim:
        """Add one row of the claims table: value with its 95% interval, the null measured in this run,
        the bar fixed before the run; the verdict is decided on the interval (lib.claims.decide).

        Give `reason` when the measurement cannot test the claim (a task at chance, an undecodable
        concept): the verdict is then "no verdict" and the reason is shown with it. Set
        `null_comparable` when the null is the same measure as the value (not a difference from it):
        a null that itself clears the bar makes the verdict "no verdict", since such a bar tests nothing.
        """
        row = claims_lib.Claim(key, claim, source, paper, _number(value), tuple(_number(c) for c in ci),
                               _number(null), null_label, _number(bar), bool(above), bar_label, reason,
                               bool(null_comparable))
        try:
            row.check()
            if any(c.key == key for c in self.claims):
                raise ValueError(f"key: {key!r} is used twice in this chapter")
        except ValueError as error:
            raise P.ParameterError(str(error)) from None
        self.claims.append(row)
        return row

    def glue(self, name: str, value, spec: str | None = None) -> None:
        """Make a measured value available to the markdown as {glue:}`name` (myst-nb), formatted with
        `spec` (e.g. ".1%") or to 3 significant figures, so that prose numbers come from the run.
        Returns nothing, so that a cell ending in a glue shows nothing."""
        text = format(_number(value), spec) if spec else claims_lib.fmt(_number(value))
        glue(name, text)

    def committed_record(self, model_name: str, chapter: str | None = None) -> dict | None:
        """The committed record of this chapter (or of `chapter`) for `model_name`
        (results/<model>/<chapter>.json), or None when there is none."""
        path = ROOT / "results" / model_name.replace("/", "__") / f"{chapter or self.name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def both_models(self):
        """(table, other model, its record): this run's claims beside the other embedded model's committed
        record of this chapter, one row per claim key, "value [95% CI]: verdict" in each cell; the other
        model is None off the embedded pair, and its record None until it has been run (`make replicate`)."""
        import pandas as pd

        from lib.models import EMBEDDED

        other_model = next((m for m in EMBEDDED if m != self.model_name), None) if self.model_name in EMBEDDED else None
        other = self.committed_record(other_model) if other_model else None
        both = pd.DataFrame({self.model_name: {c.key: f"{claims_lib.with_interval(c.value, c.ci)}: {c.verdict}"
                                               for c in self.claims}})
        if other:
            both[other_model] = pd.Series({c["key"]: f"{c['ours']}: {c['verdict']}" for c in other["claims"]})
        return both, other_model, other

    def claims_table(self, items: str) -> claims_lib.ClaimsTable:
        """Render the claims table with its provenance stamp (the nbval-checked cell); write the run's record.

        `items` says what the claims were measured on, e.g. "143 factual prompts (83 answered correctly)".
        """
        if not isinstance(items, str) or not items.strip():
            raise P.ParameterError(f"items: expected a short description like '143 prompts', got {items!r}")
        if self.toy:
            self.stamp_line = claims_lib.stamp("toy models trained in this notebook",
                                               "model_name not used", items, self.device)
        else:
            weights = "remote (NDIF)" if self.remote else weights_description(self.model_name,
                                                                              self.params.get("dtype", "float32"))
            self.stamp_line = claims_lib.stamp(self.model_name, weights, items, self.device)
        claims_lib.write_record(self)
        return claims_lib.ClaimsTable(claims_lib.table(self.claims), self.stamp_line)


def start(name: str, *, model_name, device="auto", seed=0, remote=False, toy=False, dtype="float32",
          **params) -> Chapter:
    """Validate parameters (one-line ParameterError on bad ones), seed, load the model, style plots.

    `toy=True` is for a chapter that trains its own small model in the notebook: no language model is
    loaded (`ch.model` is None), the stamp says so, and `make replicate` skips the chapter, since its
    claims do not depend on `model_name`.

    `dtype` is the precision the model runs in: float32 (the default, and the only choice on a CPU), or
    bfloat16 / float16 on a CUDA device, for 1-3B hub models on a small GPU. Integer parameters whose
    name starts with `n_` must be positive. Layer parameters are checked
    after loading with `Chapter.check_layer`, since the depth is known only then.
    """
    P.check_seed(seed)
    if not isinstance(remote, bool):
        raise P.ParameterError(f"remote: expected True or False, got {remote!r}")
    if not isinstance(toy, bool):
        raise P.ParameterError(f"toy: expected True or False, got {toy!r}")
    for key, value in params.items():
        if key.startswith("n_"):
            P.check_positive(key, value)
    resolved = "cpu" if remote else P.resolve_device(device)
    P.check_dtype(dtype, resolved)
    seed_everything(seed)
    plots.set_style()
    model = None if toy else load_model(model_name, resolved, remote=remote, dtype=dtype)
    all_params = dict(model_name=model_name, device=device, seed=seed, remote=remote, dtype=dtype, **params)
    return Chapter(name, all_params, model, resolved, remote, toy)
