"""The device rule: public `lib` functions move their inputs to the model's device and return CPU tensors.

Chapters then never think about devices: `device="auto"` picks CUDA on Colab, and the analysis after
a `lib` call runs on CPU tensors exactly as on a machine without a GPU. Only traces see the GPU.
"""

from __future__ import annotations

import dataclasses
import functools

import torch


def to_device(value, device):
    """`value` with every tensor inside it (dicts, lists, tuples, dataclasses) moved to `device`."""
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_device(v, device) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_device(getattr(value, f.name), device)
                                             for f in dataclasses.fields(value) if f.init})
    return value


HALF = (torch.bfloat16, torch.float16)


def to_cpu(value):
    """`value` with every tensor inside it on the CPU, half-precision floats as float32 (what public lib
    functions return: a model run in bfloat16 on a GPU gives the same dtypes as one run in float32)."""
    if torch.is_tensor(value):
        value = value.to("cpu")
        return value.float() if value.dtype in HALF else value
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_cpu(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_cpu(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def returns_cpu(function):
    """Decorator: the function's result, whatever device it was computed on, comes back on the CPU."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return to_cpu(function(*args, **kwargs))
    return wrapper
