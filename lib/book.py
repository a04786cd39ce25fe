"""One setup call for every chapter: validate parameters, seed, load the model, set the plot style.

    ch = start("01_logit_lens", model_name=model_name, device=device, seed=seed, n_prompts=n_prompts)
    ch.model, ch.arch, ch.tokenizer   # nnsight model, module adapter, tokenizer
    ch.claim(...); ch.claims_table(items="143 prompts")  # the nbval-checked results table (lib.claims)
"""

from __future__ import annotations

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

    def measure(self, **values) -> None:
        """Record named measurements for the run's JSON record."""
        self.measurements.update(values)

    def claim(self, claim: str, source: str, paper: str, measured, bar: str, holds: bool | None) -> None:
        """Add one row of the claims table (see lib.claims.Claim)."""
        self.claims.append(claims_lib.Claim(claim, source, paper, measured, bar, holds))

    def claims_table(self, items: str) -> claims_lib.ClaimsTable:
        """Render the claims table with its provenance stamp (the nbval-checked cell); write the run's record.

        `items` says what the claims were measured on, e.g. "143 factual prompts (83 answered correctly)".
        """
        if not isinstance(items, str) or not items.strip():
            raise P.ParameterError(f"items: expected a short description like '143 prompts', got {items!r}")
        weights = "remote (NDIF)" if self.remote else weights_description(self.model_name)
        self.stamp_line = claims_lib.stamp(self.model_name, weights, items, self.device)
        claims_lib.write_record(self)
        return claims_lib.ClaimsTable(claims_lib.table(self.claims), self.stamp_line)


def start(name: str, *, model_name, device="auto", seed=0, remote=False, **params) -> Chapter:
    """Validate parameters (one-line ParameterError on bad ones), seed, load the model, style plots.

    Integer parameters whose name starts with `n_` must be positive. Layer parameters are checked
    after loading with `Chapter.check_layer`, since the depth is known only then.
    """
    P.check_seed(seed)
    if not isinstance(remote, bool):
        raise P.ParameterError(f"remote: expected True or False, got {remote!r}")
    for key, value in params.items():
        if key.startswith("n_"):
            P.check_positive(key, value)
    resolved = "cpu" if remote else P.resolve_device(device)
    seed_everything(seed)
    plots.set_style()
    model = load_model(model_name, resolved, remote=remote)
    all_params = dict(model_name=model_name, device=device, seed=seed, remote=remote, **params)
    return Chapter(name, all_params, model, resolved, remote)
