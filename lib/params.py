"""Validate a chapter's papermill parameters before any work, with one-line errors."""

from __future__ import annotations

import re

import torch


class ParameterError(ValueError):
    """A parameter is out of range; the message names it and what is allowed."""


def resolve_device(device) -> str:
    """'auto' picks cuda when present; anything else that is not an available device is a ParameterError."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ParameterError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            here = f"{count} CUDA device(s) here" if count else "no CUDA device here"
            raise ParameterError(f"device: {device!r} is not available ({here}); use 'cpu' or 'auto'")
    return device


DTYPES = ("float32", "bfloat16", "float16")


def check_dtype(value, device: str) -> str:
    """The precision the model runs in: float32 anywhere; bfloat16 or float16 only on a CUDA device
    (`device` already resolved), where they halve the memory of a 1-3B hub model."""
    if value not in DTYPES:
        raise ParameterError(f"dtype: expected one of {list(DTYPES)}, got {value!r}")
    if value != "float32" and not device.startswith("cuda"):
        raise ParameterError(f"dtype: {value} needs device='cuda' (on {device!r} use 'float32')")
    return value


def check_positive(name: str, value) -> int:
    """A count: a positive int (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParameterError(f"{name}: expected a positive integer, got {value!r}")
    return value


def check_int_range(name: str, value, low: int, high: int | None = None) -> int:
    """An integer in [low, high], or at least `low` without `high` (bools refused): counts with a floor or
    a ceiling, such as the items a dataset has."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ParameterError(f"{name}: expected an integer {allowed}, got {value!r}")
    return value


def check_fraction(name: str, value, low: float = 0.0, high: float = 1.0) -> float:
    """A number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ParameterError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def check_layer(name: str, value, n_layers: int) -> int:
    """A layer index in [-n_layers, n_layers); negative counts from the end. Returns it non-negative."""
    if isinstance(value, bool) or not isinstance(value, int) or not -n_layers <= value < n_layers:
        raise ParameterError(
            f"{name}: expected a layer index in [0, {n_layers - 1}] (or negative from the end), got {value!r}"
        )
    return value % n_layers


def check_choice(name: str, value, allowed) -> str:
    """One of a fixed set of strings."""
    if value not in allowed:
        raise ParameterError(f"{name}: expected one of {sorted(allowed)}, got {value!r}")
    return value


def check_seed(value) -> int:
    """A non-negative int seed."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(f"seed: expected a non-negative integer, got {value!r}")
    return value
