"""The demo report's own pictures (matplotlib, Agg; PNGs written atomically): the dataset preview
with each example's attributes, depth predictions beside the ground truth with error maps, ROC
curves with TAR@FAR marked, and the gallery's top-3 answers for a few probes.

The evaluation's own pictures (CMC per subset, t-SNE, attention maps) come from
``tf_rgbd.eval.plots`` through ``tf_rgbd.eval.recognition``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from tf_rgbd import io_utils  # noqa: E402
from tf_rgbd.data.preview import MASK_PALETTE  # noqa: E402


def save(figure, path: str) -> str:
    """Writes ``figure`` as a PNG at ``path`` (atomically) and closes it."""
    with io_utils.atomic_output_path(path) as temp_path:
        figure.savefig(temp_path, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def rgb_display(rgb: np.ndarray) -> np.ndarray:
    """float [S, S, 3] in [-1, 1] -> [0, 1] for imshow."""
    return np.clip((np.asarray(rgb, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def mask_display(mask: np.ndarray) -> np.ndarray:
    """A 7-class mask (one-hot / scores [S, S, 7] or labels [S, S(, 1)]) -> uint8 RGB."""
    mask = np.asarray(mask)
    labels = mask.argmax(-1) if mask.ndim == 3 and mask.shape[-1] > 1 else mask.reshape(
        mask.shape[:2]).astype(int)
    return MASK_PALETTE[np.clip(labels, 0, len(MASK_PALETTE) - 1)]


def depth_display(depth: np.ndarray) -> np.ma.MaskedArray:
    """Normalised depth [S, S(, 1)] (0 = background) masked where 0 (shown white)."""
    depth = np.asarray(depth, np.float32).reshape(np.shape(depth)[:2])
    return np.ma.masked_where(depth <= 0.0, depth)


def _off(axis) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)


def plot_dataset_preview(examples: Sequence[Mapping], path: str) -> str:
    """Columns = examples; rows RGB | depth (near = warm) | 7-class mask; each column titled with
    its subject and attributes.

    Args:
      examples: dicts with ``rgb`` [S,S,3] in [-1,1], ``depth`` [S,S,1] in [0,1], ``mask``,
        and the caption fields ``subject``, ``expression``, ``yaw_deg``, ``occlusion``,
        ``session``.
    """
    count = len(examples)
    figure, axes = plt.subplots(3, count, figsize=(1.7 * count, 5.6), squeeze=False)
    for column, example in enumerate(examples):
        axes[0, column].imshow(rgb_display(example["rgb"]))
        axes[0, column].set_title(
            f"{example['subject']}\n{example['expression']}, yaw {example['yaw_deg']:+.0f}°\n"
            f"occl. {example['occlusion']}, s{example['session']}", fontsize=7)
        cmap = plt.get_cmap("turbo").with_extremes(bad="white")
        axes[1, column].imshow(depth_display(example["depth"]), cmap=cmap, vmin=0, vmax=1)
        axes[2, column].imshow(mask_display(example["mask"]))
    for row, name in enumerate(("RGB", "depth", "mask")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    for axis in axes.ravel():
        _off(axis)
    return save(figure, path)


def plot_depth_predictions(rows: Sequence[Mapping], methods: Sequence[str], path: str) -> str:
    """One row per test face: RGB | ground-truth depth | per method: prediction and |error|
    (on the ground truth's face pixels) | ground-truth mask | the first method's mask.

    Args:
      rows: dicts with ``rgb``, ``depth`` (ground truth, [0, 1]), ``mask``, ``caption`` and
        per method ``<method>/depth`` (normalised, [0, 1]) and optionally ``<method>/mask``.
      methods: method names in column order.
    """
    columns = ["RGB", "ground truth"]
    for method in methods:
        columns += [method, f"|error| {method}"]
    mask_method = next((m for m in methods if f"{m}/mask" in rows[0]), None)
    columns += ["mask (truth)"] + ([f"M* {mask_method}"] if mask_method else [])
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(1.55 * len(columns),
                                                                  1.7 * len(rows)),
                                squeeze=False)
    cmap = plt.get_cmap("turbo").with_extremes(bad="white")
    for index, row in enumerate(rows):
        truth = np.asarray(row["depth"], np.float32).reshape(np.shape(row["depth"])[:2])
        face = truth > 0
        panels = [("image", rgb_display(row["rgb"])), ("depth", depth_display(truth))]
        for method in methods:
            predicted = np.asarray(row[f"{method}/depth"], np.float32).reshape(truth.shape)
            error = np.ma.masked_where(~face, np.abs(predicted - truth))
            panels += [("depth", depth_display(predicted)), ("error", error)]
        panels.append(("image", mask_display(row["mask"])))
        if mask_method:
            panels.append(("image", mask_display(row[f"{mask_method}/mask"])))
        for column, (kind, image) in enumerate(panels):
            axis = axes[index, column]
            if kind == "image":
                axis.imshow(image)
            elif kind == "depth":
                axis.imshow(image, cmap=cmap, vmin=0, vmax=1)
            else:
                shown = axis.imshow(image, cmap="magma", vmin=0, vmax=0.25)
                axis.text(1, image.shape[0] - 2, f"mean {float(image.mean()):.3f}",
                          color="white", fontsize=6, backgroundcolor="black")
            if index == 0:
                axis.set_title(columns[column], fontsize=7)
            _off(axis)
        axes[index, 0].set_ylabel(row.get("caption", ""), fontsize=6)
    del shown
    return save(figure, path)


def plot_roc_marked(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    marks: Mapping[str, Mapping[str, float]], path: str,
                    title: str = "ROC") -> str:
    """ROC curves (log FAR) with each method's TAR at the target FARs marked and labelled.

    Args:
      curves: name -> (far [T], tar [T]) (fractions).
      marks: name -> {target FAR as text: TAR fraction (nan = not measurable)}.
    """
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    for name, (far, tar) in curves.items():
        far, tar = np.asarray(far), np.asarray(tar)
        keep = far > 0
        points = {far_text: value for far_text, value in (marks.get(name) or {}).items()
                  if value is not None and np.isfinite(value)}
        label = name + "".join(f"\n   TAR {100 * value:.1f}% @ FAR {far_text}"
                               for far_text, value in points.items())
        line, = axis.plot(far[keep], 100.0 * tar[keep], label=label)
        for far_text, value in points.items():
            axis.plot([float(far_text)], [100.0 * value], marker="o", markersize=7,
                      markeredgecolor="black", color=line.get_color())
    for far_text in sorted({far for mark in marks.values() for far in mark}, key=float):
        axis.axvline(float(far_text), color="grey", linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(figure, path)


def plot_gallery_answers(probes: Sequence[Mapping], path: str) -> str:
    """One row per probe: the probe face, then its top-3 gallery subjects (their enrolled face,
    name, score; green = the probe's identity, red = another).

    Args:
      probes: dicts with ``rgb``, ``caption`` and ``matches``: [{``rgb``, ``subject``,
        ``score``, ``correct``}] best first.
    """
    width = 1 + max(len(probe["matches"]) for probe in probes)
    figure, axes = plt.subplots(len(probes), width, figsize=(1.9 * width, 2.1 * len(probes)),
                                squeeze=False)
    for row, probe in enumerate(probes):
        axes[row, 0].imshow(rgb_display(probe["rgb"]))
        axes[row, 0].set_title(probe["caption"], fontsize=7)
        for column, match in enumerate(probe["matches"], start=1):
            axis = axes[row, column]
            axis.imshow(rgb_display(match["rgb"]))
            colour = "tab:green" if match["correct"] else "tab:red"
            axis.set_title(f"#{column} {match['subject']}\nscore {match['score']:.3f}",
                           fontsize=7, color=colour)
            for spine in axis.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            axis.set_xticks([])
            axis.set_yticks([])
        for column in range(1 + len(probe["matches"]), width):
            axes[row, column].axis("off")
        _off(axes[row, 0])
    return save(figure, path)
