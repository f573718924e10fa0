"""The demo's pictures: training curves, cross-modal similarity heatmaps and a 2-D map of the
joint embedding space. Each function writes one PNG and returns its path.

Only numpy and matplotlib (Agg backend, no display needed); the embeddings come in as arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["pca_2d", "plot_curves", "plot_embedding_map", "plot_similarity", "read_metrics"]

#: Marker of each modality in the embedding map (others get "s").
MARKERS = {"image": "o", "audio": "^", "text": "*"}
#: Accuracy-like metrics drawn in the curves, with the labels they get.
CURVE_METRICS = {
    "imagebind-zero-shot/top1": "zero-shot image -> text (top-1)",
    "emergent-zero-shot/top1": "emergent audio -> text (top-1)",
    "cross-modal-retrieval/audio_to_image_recall@1": "audio -> image recall@1",
    "cross-modal-retrieval/image_to_audio_recall@1": "image -> audio recall@1",
}


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.jsonl`` (one JSON object per line)."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not JSON ({exc})") from None
    return rows


def plot_curves(metrics: Sequence[Mapping[str, float]], out: str | Path, *, chance: float) -> Path:
    """Loss terms (left) and evaluation accuracies (right) against the training step."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    train = [r for r in metrics if "loss" in r]
    if train:
        steps = [r["step"] for r in train]
        terms = sorted({k for r in train for k in r if k.startswith("loss/")})
        left.plot(steps, [r["loss"] for r in train], color="black", lw=2, label="total")
        for term in terms:
            label = term.removeprefix("loss/").replace("_", " <-> ")
            left.plot(steps, [r.get(term, np.nan) for r in train], lw=1.5, label=label)
        left.legend()
    left.set(title="training loss (symmetric InfoNCE per pair)", xlabel="step", ylabel="loss")
    left.grid(alpha=0.3)

    evals = [r for r in metrics if any(k.startswith("eval/") for k in r)]
    for key, label in CURVE_METRICS.items():
        points = [(r["step"], r[f"eval/{key}"]) for r in evals if f"eval/{key}" in r]
        if points:
            xs, ys = zip(*points)
            style = "--" if key.startswith("emergent") else "-"
            right.plot(xs, [100 * y for y in ys], style, marker="o", lw=2, label=label)
    right.axhline(100 * chance, color="grey", ls=":", label=f"chance ({100 * chance:.0f}%)")
    right.set(
        title="held-out test split (new voices, new prompts)",
        xlabel="step",
        ylabel="accuracy / recall (%)",
        ylim=(0, 100),
    )
    right.grid(alpha=0.3)
    right.legend(loc="best", fontsize=9)
    return _save(fig, out)


def plot_similarity(
    panels: Sequence[tuple[str, np.ndarray, str, str]],
    class_names: Sequence[str],
    out: str | Path,
) -> Path:
    """One heatmap per ``(title, (K, K) cosine similarities, row label, column label)``; rows
    and columns are classes, the diagonal is "same class". Each panel's title gets how many
    rows have their highest value on the diagonal."""
    plt = _pyplot()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.0), constrained_layout=True, squeeze=False)
    for ax, (title, sim, rows, cols) in zip(axes[0], panels):
        sim = np.asarray(sim, dtype=np.float64)
        image = ax.imshow(sim, cmap="viridis")
        hits = int((sim.argmax(axis=1) == np.arange(len(sim))).sum())
        ax.set_title(f"{title}\n(row max on the diagonal: {hits}/{len(sim)})", fontsize=10)
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(ticks, class_names, fontsize=8)
        ax.set_xlabel(cols)
        ax.set_ylabel(rows)
        fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    return _save(fig, out)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their two principal components; returns the points ``(N, 2)`` and
    the fraction of variance each component explains."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    return centred @ vt[:2].T, var[:2] / var.sum()


def plot_embedding_map(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    out: str | Path,
) -> Path:
    """The joint space in 2-D: ``{modality: (unit embeddings (N, E), labels (N,))}``, coloured
    by class and marked by modality.

    Left: PCA of all points together, which shows the "modality gap" (each modality in its own
    region of the sphere). Right: PCA after removing each modality's mean, which shows whether
    the classes line up across modalities.
    """
    plt = _pyplot()
    names = list(points)
    stacked = np.concatenate([np.asarray(points[m][0], dtype=np.float64) for m in names])
    centred = np.concatenate(
        [
            np.asarray(points[m][0], dtype=np.float64)
            - np.asarray(points[m][0], dtype=np.float64).mean(axis=0, keepdims=True)
            for m in names
        ]
    )
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.2), constrained_layout=True)
    for ax, data, title in (
        (axes[0], stacked, "joint space (PCA)"),
        (axes[1], centred, "each modality's mean removed (PCA)"),
    ):
        xy, explained = pca_2d(data)
        start = 0
        for m in names:
            labels = np.asarray(points[m][1])
            part = xy[start : start + len(labels)]
            start += len(labels)
            big = m == "text"
            ax.scatter(
                part[:, 0],
                part[:, 1],
                c=[colours(int(y) % 10) for y in labels],
                marker=MARKERS.get(m, "s"),
                s=120 if big else 22,
                alpha=0.95 if big else 0.6,
                edgecolors="black" if big else "none",
                linewidths=0.6,
            )
        ax.set_title(title)
        ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f}% of variance)")
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=colours(i), marker="o", ls="", label=name)
        for i, name in enumerate(class_names)
    ]
    handles += [
        Line2D([], [], color="grey", marker=MARKERS.get(m, "s"), ls="", ms=9, label=m)
        for m in names
    ]
    axes[1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
