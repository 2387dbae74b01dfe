"""Face pairs for verification: balanced genuine / impostor pairs of one split's identities.

Two kinds:

* **training pairs** (:func:`pair_dataset`): an infinite tf.data stream over a
  :class:`DepthBank` (one split's depth maps, decoded once from the TFRecords by
  :func:`load_depth_bank`). Pair ``i`` is genuine when ``i`` is even, impostor when odd (exactly
  balanced in every even batch), and is drawn with stateless random ops seeded by
  ``(seed, i)``: the stream is deterministic, and skipping ``n`` pairs (a resumed run) gives
  exactly the pairs the uninterrupted run would have seen next. Genuine: an identity with >= 2
  images, then two different images of it. Impostor: two different identities, one image each
  (identities uniform, then images uniform).
* **fixed pair lists** (:func:`fixed_pairs`): a seeded, balanced sample without replacement of
  all genuine and all impostor pairs of a list of examples, by example id, so every depth
  source of an evaluation is scored on the same pairs.

The bank holds the split's depth in memory (N x S x S float32: 4 MB for 1,000 images at 32 px);
it suits verification experiments on datasets of up to some 10^5 small images.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_rgbd.data import pipeline


@dataclasses.dataclass(frozen=True)
class DepthBank:
    """Depth maps of one split (or a subset of its identities).

    Attributes:
      depth: float32 [N, S, S, 1] normalised depth (pipeline convention).
      labels: int32 [N] identity labels.
      example_ids: the N example ids.
    """

    depth: np.ndarray
    labels: np.ndarray
    example_ids: tuple[str, ...]

    def __post_init__(self):
        if not (len(self.depth) == len(self.labels) == len(self.example_ids)):
            raise ValueError(f"DepthBank: {len(self.depth)} depth maps, {len(self.labels)} "
                             f"labels, {len(self.example_ids)} ids")

    @property
    def identities(self) -> tuple[int, ...]:
        return tuple(sorted(int(label) for label in set(self.labels.tolist())))

    def subset(self, identities: Sequence[int]) -> "DepthBank":
        """The examples of ``identities`` only (order kept)."""
        keep = np.isin(self.labels, np.asarray(list(identities), np.int64))
        return DepthBank(self.depth[keep], self.labels[keep],
                         tuple(i for i, k in zip(self.example_ids, keep) if k))

    def index_of(self) -> dict[str, int]:
        return {example_id: index for index, example_id in enumerate(self.example_ids)}


def load_depth_bank(data_dir: str, split: str, image_size: int,
                    depth_range_mm: float = pipeline.DEFAULT_DEPTH_RANGE_MM,
                    identities: Optional[Sequence[int]] = None,
                    exclude_shards: Sequence[str] = (), batch_size: int = 256) -> DepthBank:
    """The ground-truth depth of ``split`` (examples without depth left out), decoded from the
    TFRecords by :func:`tf_rgbd.data.pipeline.make_dataset` (no augmentation), optionally only
    the examples of ``identities``.

    Raises:
      ValueError: the split has no example with depth (of the requested identities).
    """
    dataset = pipeline.make_dataset(data_dir, split, batch_size=batch_size,
                                    image_size=image_size, modalities=("depth",),
                                    with_metadata=True, deterministic=True,
                                    depth_range_mm=depth_range_mm, exclude_shards=exclude_shards,
                                    zero_fill=("depth",))  # left out below, never used as zeros
    depth, labels, ids = [], [], []
    for batch in dataset.as_numpy_iterator():
        keep = batch["has_depth"].astype(bool)
        depth.append(batch["depth"][keep])
        labels.append(batch["label"][keep])
        ids.extend(value.decode() for value in batch["example_id"][keep])
    bank = DepthBank(np.concatenate(depth).astype(np.float32) if depth
                     else np.zeros([0, image_size, image_size, 1], np.float32),
                     np.concatenate(labels).astype(np.int32) if labels else np.zeros([0], np.int32),
                     tuple(ids))
    if identities is not None:
        bank = bank.subset(identities)
    if not len(bank.example_ids):
        raise ValueError(f"{data_dir}: split {split!r} has no example with ground-truth depth"
                         + (f" among identities {list(identities)}" if identities is not None
                            else "") + "; verification needs depth maps")
    return bank


def split_identities(identities: Sequence[int], held_out_fraction: float
                     ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(kept, held out): the last ``round(fraction * n)`` (at least 2) of the sorted identities
    are held out. Raises unless both sides have >= 2 identities."""
    ordered = sorted(int(identity) for identity in set(identities))
    held = max(2, int(round(held_out_fraction * len(ordered))))
    if len(ordered) - held < 2:
        raise ValueError(f"{len(ordered)} identities cannot be split into >= 2 for training and "
                         f"{held} held out (fraction {held_out_fraction}); the training split "
                         "needs at least 4 identities")
    return tuple(ordered[:-held]), tuple(ordered[-held:])


def _check_pairable(labels: np.ndarray, what: str) -> None:
    counts = np.bincount(labels - labels.min()) if len(labels) else np.zeros(0)
    if np.count_nonzero(counts) < 2 or not np.any(counts >= 2):
        raise ValueError(f"{what}: genuine and impostor pairs need >= 2 identities and an "
                         f"identity with >= 2 images; got {np.count_nonzero(counts)} identities "
                         f"with at most {int(counts.max()) if len(counts) else 0} image(s)")


def pair_dataset(bank: DepthBank, batch_size: int, seed: int, skip_pairs: int = 0,
                 augment: bool = False) -> tf.data.Dataset:
    """Infinite balanced training pairs over ``bank`` (see the module docstring).

    Args:
      batch_size: pairs per batch (even batches are exactly half genuine).
      seed: the pair stream's seed.
      skip_pairs: pairs already consumed (a resumed run); the stream continues after them.
      augment: a random horizontal flip of each depth map (seeded by the pair's position).

    Returns:
      Batches ``{"depth_a", "depth_b": float32 [B, S, S, 1], "same": float32 [B] (1 genuine),
      "label_a", "label_b": int32 [B], "index_a", "index_b": int32 [B] (rows of the bank)}``.
    """
    labels = np.asarray(bank.labels, np.int64)
    _check_pairable(labels, "pair_dataset")
    order = np.argsort(labels, kind="stable").astype(np.int32)
    identities, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    del identities
    multi = np.flatnonzero(counts >= 2).astype(np.int32)
    order_t = tf.constant(order)
    starts_t = tf.constant(starts.astype(np.int32))
    counts_t = tf.constant(counts.astype(np.int32))
    multi_t = tf.constant(multi)
    num_ids = tf.constant(len(counts), tf.int32)
    depth_t = tf.constant(bank.depth, tf.float32)
    labels_t = tf.constant(bank.labels.astype(np.int32))
    base_seed = tf.constant(int(seed), tf.int64)

    def uniform_index(seed_pair: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
        value = tf.random.stateless_uniform([], seed_pair)
        index = tf.cast(tf.floor(value * tf.cast(size, tf.float32)), tf.int32)
        return tf.minimum(index, size - 1)

    def draw(position: tf.Tensor) -> dict[str, tf.Tensor]:
        seeds = tf.random.experimental.stateless_split(tf.stack([base_seed, position]), 6)
        genuine = tf.equal(position % 2, 0)
        # Genuine: an identity with >= 2 images, two different images of it.
        identity = multi_t[uniform_index(seeds[0], tf.size(multi_t))]
        first = uniform_index(seeds[1], counts_t[identity])
        second = uniform_index(seeds[2], counts_t[identity] - 1)
        second = second + tf.cast(second >= first, tf.int32)
        genuine_pair = tf.stack([starts_t[identity] + first, starts_t[identity] + second])
        # Impostor: two different identities, one image of each.
        identity_a = uniform_index(seeds[0], num_ids)
        identity_b = uniform_index(seeds[3], num_ids - 1)
        identity_b = identity_b + tf.cast(identity_b >= identity_a, tf.int32)
        impostor_pair = tf.stack([starts_t[identity_a] + uniform_index(seeds[1],
                                                                        counts_t[identity_a]),
                                  starts_t[identity_b] + uniform_index(seeds[2],
                                                                        counts_t[identity_b])])
        index = tf.gather(order_t, tf.where(genuine, genuine_pair, impostor_pair))
        depth_a, depth_b = tf.gather(depth_t, index[0]), tf.gather(depth_t, index[1])
        if augment:
            flips = tf.random.stateless_uniform([2], seeds[4]) < 0.5
            depth_a = tf.where(flips[0], tf.reverse(depth_a, axis=[1]), depth_a)
            depth_b = tf.where(flips[1], tf.reverse(depth_b, axis=[1]), depth_b)
        return {"depth_a": depth_a, "depth_b": depth_b, "same": tf.cast(genuine, tf.float32),
                "label_a": tf.gather(labels_t, index[0]), "label_b": tf.gather(labels_t, index[1]),
                "index_a": index[0], "index_b": index[1]}

    dataset = tf.data.Dataset.counter(start=int(skip_pairs), dtype=tf.int64)
    dataset = dataset.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def fixed_pairs(example_ids: Sequence[str], labels: Sequence[int], max_pairs: int, seed: int
                ) -> list[tuple[str, str, int]]:
    """A seeded, balanced pair list: ``k`` genuine and ``k`` impostor pairs drawn without
    replacement from all pairs of the examples, ``k = min(max_pairs, #genuine, #impostor)``,
    in a seeded random order. Each entry is ``(example_id_a, example_id_b, same)``, ids in the
    order given (``a`` before ``b``).

    Raises:
      ValueError: no genuine or no impostor pair exists.
    """
    labels = np.asarray(labels, np.int64)
    if len(example_ids) != len(labels):
        raise ValueError(f"{len(example_ids)} example ids but {len(labels)} labels")
    _check_pairable(labels, "fixed_pairs")
    genuine, impostor = [], []
    for first, second in itertools.combinations(range(len(labels)), 2):
        (genuine if labels[first] == labels[second] else impostor).append((first, second))
    count = min(int(max_pairs), len(genuine), len(impostor))
    rng = np.random.default_rng(seed)
    chosen = ([(*genuine[i], 1) for i in sorted(rng.choice(len(genuine), count, replace=False))]
              + [(*impostor[i], 0)
                 for i in sorted(rng.choice(len(impostor), count, replace=False))])
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    return [(example_ids[a], example_ids[b], same) for a, b, same in chosen]


def pair_balance(pairs: Sequence[tuple[str, str, int]]) -> float:
    """Fraction of genuine pairs in a pair list (``nan`` when empty)."""
    return float(np.mean([same for _, _, same in pairs])) if pairs else math.nan
