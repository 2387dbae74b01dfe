"""Pictures of a recognition evaluation (matplotlib, Agg backend; PNG files written atomically).

* :func:`plot_cmc` — CMC curves (rank 1..R) of several methods / subsets.
* :func:`plot_roc` — ROC curves (log FAR axis).
* :func:`plot_attention_overlays` — SAM attention maps over probe faces (paper Fig. 10).
* :func:`plot_tsne` — t-SNE of identity features of a few identities (paper Fig. 12).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from tf_rgbd import io_utils  # noqa: E402


def _save(figure, path: str) -> str:
    with io_utils.atomic_output_path(path) as temp_path:
        figure.savefig(temp_path, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_cmc(curves: Mapping[str, Sequence[float]], path: str, title: str = "CMC") -> str:
    """curves: name -> identification rates for ranks 1..R (fractions)."""
    figure, axis = plt.subplots(figsize=(5, 4))
    for name, curve in curves.items():
        ranks = np.arange(1, len(curve) + 1)
        axis.plot(ranks, 100.0 * np.asarray(curve), marker="o", markersize=3, label=name)
    axis.set_xlabel("rank")
    axis.set_ylabel("identification rate (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str,
             title: str = "ROC") -> str:
    """curves: name -> (far [T], tar [T]); FAR on a log axis (points with FAR = 0 dropped)."""
    figure, axis = plt.subplots(figsize=(5, 4))
    for name, (far, tar) in curves.items():
        far, tar = np.asarray(far), np.asarray(tar)
        keep = far > 0
        axis.plot(far[keep], 100.0 * tar[keep], label=name)
    axis.set_xscale("log")
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    return _save(figure, path)


def _resize_nearest(image: np.ndarray, size: int) -> np.ndarray:
    rows = (np.arange(size) * image.shape[0] / size).astype(int)
    cols = (np.arange(size) * image.shape[1] / size).astype(int)
    return image[rows][:, cols]


def plot_attention_overlays(rgb: np.ndarray, attention: Mapping[str, np.ndarray], path: str,
                            captions: Optional[Sequence[str]] = None) -> str:
    """Faces with each attention map blended on top (one row per face).

    Each map is contrast-stretched to its own [min, max] for display; the raw range is printed
    above it.

    Args:
      rgb: float [N, S, S, 3] in [-1, 1].
      attention: name -> float [N, h, w, 1] in [0, 1] (upsampled to S x S for display).
      captions: optional text per face.
    """
    count = len(rgb)
    names = list(attention)
    figure, axes = plt.subplots(count, 1 + len(names), figsize=(2.2 * (1 + len(names)),
                                                                2.2 * count), squeeze=False)
    size = rgb.shape[1]
    for row in range(count):
        face = np.clip((rgb[row] + 1.0) / 2.0, 0.0, 1.0)
        axes[row, 0].imshow(face)
        axes[row, 0].set_title(captions[row] if captions else "face", fontsize=7)
        for column, name in enumerate(names, start=1):
            heat = _resize_nearest(np.asarray(attention[name][row])[..., 0], size)
            low, high = float(heat.min()), float(heat.max())
            # Contrast-stretched per map (the raw range is in the title): trained SAM maps
            # often span a narrow band such as [0.7, 0.9].
            stretched = (heat - low) / max(high - low, 1e-6)
            axes[row, column].imshow(face)
            axes[row, column].imshow(stretched, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
            axes[row, column].set_title(f"{name}\n[{low:.2f}, {high:.2f}]", fontsize=7)
    for axis in axes.ravel():
        axis.axis("off")
    return _save(figure, path)


def plot_tsne(features: np.ndarray, labels: np.ndarray, path: str, num_identities: int = 9,
              seed: int = 0, title: str = "t-SNE of identity features") -> str:
    """2-D t-SNE (scikit-learn) of the features of the first ``num_identities`` identities.

    Args:
      features: float [N, D]; labels: int [N].
    """
    from sklearn.manifold import TSNE  # imported here: slow import, only needed for this plot

    identities = np.unique(labels)[:num_identities]
    keep = np.isin(labels, identities)
    chosen, chosen_labels = np.asarray(features)[keep], np.asarray(labels)[keep]
    if len(chosen) < 3:
        raise ValueError(f"t-SNE needs at least 3 faces, got {len(chosen)}")
    perplexity = float(min(30.0, max(1.0, (len(chosen) - 1) / 3.0)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed
                  ).fit_transform(chosen)
    figure, axis = plt.subplots(figsize=(5, 5))
    cmap = plt.get_cmap("tab10")
    for index, identity in enumerate(identities):
        selected = chosen_labels == identity
        axis.scatter(points[selected, 0], points[selected, 1], s=14, color=cmap(index % 10),
                     label=str(identity))
    axis.set_title(title)
    axis.legend(fontsize=7, title="identity", loc="best")
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)
