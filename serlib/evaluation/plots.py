"""Figures for run folders and the report (matplotlib + seaborn, file output only).

Functions take plain results (a metrics dict, a history table) and return the
matplotlib Figure; pass ``path`` to also save it as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def _finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_confusion_matrix(report: dict[str, Any], path: str | Path | None = None, title: str = "") -> plt.Figure:
    """Row-normalised confusion matrix (colour, percent) annotated with counts."""
    labels = report["labels"]
    counts = np.asarray(report["confusion_matrix"])
    norm = np.asarray(report["confusion_matrix_normalized"]) * 100
    annot = np.array([[f"{norm[i, j]:.0f}%\n({counts[i, j]})" for j in range(len(labels))] for i in range(len(labels))])
    size = 1.0 + 0.75 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    sns.heatmap(norm, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=100, square=True, cbar_kws={"label": "% of true class"},
                xticklabels=labels, yticklabels=labels, ax=ax, annot_kws={"fontsize": 8})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    # wrapped to the figure's width, so a long title never runs under the colour bar or off the figure
    ax.set_title(_wrapped(title or f"UAR {report['uar'] * 100:.1f}%  (n={report['n']})", size + 1.2), fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    plt.setp(ax.get_yticklabels(), rotation=0)
    return _finish(fig, path)


def plot_per_class(report: dict[str, Any], path: str | Path | None = None, title: str = "") -> plt.Figure:
    """Grouped bars of precision, recall and F1 per class."""
    df = pd.DataFrame(report["per_class"]).melt(id_vars=["label"], value_vars=["precision", "recall", "f1"],
                                               var_name="metric", value_name="score")
    df["score"] *= 100
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(report["labels"]), 3.8))
    sns.barplot(df, x="label", y="score", hue="metric", ax=ax)
    ax.set_ylim(0, 100)
    ax.set_xlabel("")
    ax.set_ylabel("%")
    ax.set_title(title or "per-class precision, recall and F1")
    ax.legend(loc="lower right", fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=25, ha="right")
    return _finish(fig, path)


def plot_training_curves(history: pd.DataFrame, path: str | Path | None = None, title: str = "") -> plt.Figure:
    """Losses, validation UAR/accuracy and learning rate per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(history["epoch"], history["train_loss"], label="train")
    axes[0].plot(history["epoch"], history["val_loss"], label="validation")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(history["epoch"], history["val_uar"] * 100, label="val UAR")
    axes[1].plot(history["epoch"], history["val_accuracy"] * 100, label="val accuracy", linestyle="--")
    best = history.loc[history["val_uar"].idxmax()]
    axes[1].scatter([best["epoch"]], [best["val_uar"] * 100], color="red", zorder=3, label=f"best {best['val_uar'] * 100:.1f}%")
    axes[1].set_title("validation")
    axes[1].set_ylabel("%")
    axes[1].legend(fontsize=8)
    axes[2].plot(history["epoch"], history["lr"])
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_uar_matrix(matrix: pd.DataFrame, path: str | Path | None = None, title: str = "") -> plt.Figure:
    """Heatmap of a train-corpus x test-corpus UAR matrix (percent)."""
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * matrix.shape[1], 1.0 + 1.0 * matrix.shape[0]))
    sns.heatmap(matrix * 100, annot=True, fmt=".1f", cmap="viridis", vmin=0, vmax=100, ax=ax, cbar_kws={"label": "UAR %"})
    ax.set_xlabel("test corpus")
    ax.set_ylabel("train corpus")
    ax.set_title(title or "cross-corpus UAR")
    return _finish(fig, path)


MAX_SPEAKER_ROWS = 30
"""Above this many test speakers, :func:`plot_per_speaker_uar` draws each system's spread instead of one row each."""


def _wrapped(title: str, width_inches: float) -> str:
    """``title`` broken into lines that fit a figure ``width_inches`` wide (about 11 characters per inch at 9 pt)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, max(20, int(11 * width_inches)))) if title else title


def _per_speaker_spread(table: pd.DataFrame, systems: list[str], path: str | Path | None, *, chance: float | None,
                        title: str) -> plt.Figure:
    """Each system's per-speaker UARs as a box with every speaker as a dot, one row per system."""
    rows = list(reversed(systems))
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.6 * len(rows)))
    data = [table[s].dropna().to_numpy() for s in rows]
    ax.boxplot(data, vert=False, widths=0.5, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(0)
    for k, values in enumerate(data, 1):
        ax.scatter(values, k + rng.uniform(-0.15, 0.15, len(values)), s=10, alpha=0.6, color=f"C{len(rows) - k}",
                   zorder=3)
    if chance is not None:
        ax.axvline(100 * chance, color="grey", ls="--", lw=1)
        ax.text(100 * chance, len(rows) + 0.45, " chance", color="grey", fontsize=8, va="bottom")
    ax.set_yticks(range(1, len(rows) + 1), rows)
    ax.set_xlim(0, 100)
    ax.set_ylim(0.4, len(rows) + 0.8)
    ax.set_xlabel(f"UAR % over each test speaker's clips ({len(table)} speakers, one dot each)")
    ax.set_title(_wrapped(title or "UAR per test speaker", 8), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def plot_per_speaker_uar(table: pd.DataFrame, path: str | Path | None = None, *, chance: float | None = None,
                         title: str = "") -> plt.Figure:
    """UAR of every test speaker for one or more systems (from :func:`serlib.report.comparisons.per_speaker_uar`).

    One row per speaker (worst of the first system at the bottom), one marker per
    system, so the speakers on which every system fails stand out; the legend sits
    below the axes. With more than :data:`MAX_SPEAKER_ROWS` speakers, one row per
    system instead: a box of its per-speaker UARs with every speaker as a dot, so
    the figure fits one screen. ``chance`` (a fraction) draws a dashed line.
    """
    systems = [c for c in table.columns if c != "clips"]
    if len(table) > MAX_SPEAKER_ROWS:  # too many speakers for one row each: their spread per system, one screen
        return _per_speaker_spread(table, systems, path, chance=chance, title=title)
    t = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 2.6 + 0.22 * len(t)))
    y = np.arange(len(t))
    markers = "osD^v<>p*h"
    for k, system in enumerate(systems):  # the first system filled, the others hollow, so equal values stay visible
        color = f"C{k}"
        ax.scatter(t[system], y, marker=markers[k % len(markers)], s=28 if k == 0 else 46, label=system, zorder=3 + k,
                   facecolors=color if k == 0 else "none", edgecolors=color, linewidths=1.2)
    if len(systems) > 1:
        ax.hlines(y, t[systems].min(axis=1), t[systems].max(axis=1), color="lightgrey", lw=1, zorder=1)
    if chance is not None:
        ax.axvline(100 * chance, color="grey", ls="--", lw=1, label="chance")
    ax.set_yticks(y)
    ax.set_yticklabels([str(s) for s in t.index], fontsize=9)
    ax.set_xlim(0, 100)
    ax.set_xlabel("UAR % over the speaker's test clips")
    ax.set_ylabel("test speaker")
    ax.set_title(_wrapped(title or "UAR per test speaker", 7), fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (2.6 + 0.22 * len(t)) - 0.08), ncol=2, fontsize=8,
              frameon=False)  # below the axes: never over a speaker's markers
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)
