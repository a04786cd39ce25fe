"""One plot style for the book, and the figure kinds chapters share. Helpers return Axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

DIVERGING = "RdBu_r"


def set_style() -> None:
    """The book's one style: seaborn whitegrid, readable sizes, crisp inline figures."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.figsize": (7, 4),
                         "axes.titleweight": "bold"})


def to_numpy(values) -> np.ndarray:
    """A plain array from a tensor on any device (float32 for half precision), an array or a list."""
    if torch.is_tensor(values):
        values = values.detach().cpu()
        return (values.float() if values.is_floating_point() else values).numpy()
    return np.asarray(values)


def heatmap(values, *, title: str, xlabel: str, ylabel: str, xticklabels="auto", yticklabels="auto",
            diverging: bool = True, cbar_label: str = "", ax=None, **kwargs):
    """Heatmap of a 2-D tensor or array; diverging data use one palette centred at zero (RdBu_r, center=0)."""
    if ax is None:
        _, ax = plt.subplots(figsize=kwargs.pop("figsize", (7, 5)))
    style = dict(cmap=DIVERGING, center=0) if diverging else dict(cmap="viridis")
    sns.heatmap(to_numpy(values), ax=ax, xticklabels=xticklabels, yticklabels=yticklabels,
                cbar_kws={"label": cbar_label}, **style, **kwargs)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def by_layer(frame: pd.DataFrame, *, y: str, hue: str | None, title: str, ylabel: str,
             x: str = "layer", log: bool = False, ax=None, **kwargs):
    """Line plot of a per-layer quantity with seaborn's confidence band (mean, 95% bootstrap CI)."""
    if ax is None:
        _, ax = plt.subplots()
    sns.lineplot(frame, x=x, y=y, hue=hue, ax=ax, errorbar=("ci", 95), **kwargs)
    ax.set(title=title, xlabel="layer" if x == "layer" else x, ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    return ax
