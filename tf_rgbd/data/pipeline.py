"""tf.data input pipeline: list shards -> interleave -> parse -> validate -> decode -> augment -> batch.

Every element is a dict of named tensors (see :func:`make_dataset`). Images are float32 in
[-1, 1]; depth is per-image normalised to (0, 1] on the face (nearer = larger) with 0 for
background / no data; masks are 7-channel one-hot.

A corrupt record (undecodable or truncated image, sizes that disagree) stops iteration with an
``InvalidArgumentError`` whose message names the shard file and the record index inside it.

A requested modality that an example lacks (``has_depth``/``has_mask``/``has_gt_depth``/
``has_neutral_depth`` = 0) is an error of the same kind, unless the caller lists it in
``zero_fill`` (then that example gets zeros and its ``has_*`` flag says so): nothing is
zero-filled unless asked for.
"""
from __future__ import annotations

import glob
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_rgbd.data import schema
from tf_rgbd.data.writer import read_manifest  # re-exported: pipeline users read manifests too

__all__ = ["make_dataset", "list_shards", "normalize_depth", "masked_resize", "resize_rgb",
           "read_manifest", "MODALITIES"]

MODALITIES = ("rgb", "depth", "mask", "neutral_depth", "gt_depth")
METADATA_STRING_KEYS = ("example_id", "subject", "domain", "expression", "occlusion")
METADATA_FLOAT_KEYS = ("yaw_deg", "pitch_deg", "roll_deg")
DEFAULT_DEPTH_RANGE_MM = 200.0
# The nearest face point maps to 1 and points depth_range_mm behind it to MIN_FACE_DEPTH, so a
# valid pixel never collides with background (0).
MIN_FACE_DEPTH = 1.0 / 255.0
_PNG_TRAILER = b"IEND\xaeB`\x82"
_JPEG_TRAILER = b"\xff\xd9"


def list_shards(pattern: str, split: Optional[str] = "train",
                exclude: Sequence[str] = ()) -> list[str]:
    """Shard files of ``split`` in a dataset directory, or the files matching a glob, without
    those named in ``exclude`` (file names or paths: e.g. corrupt shards left out).

    Raises:
      FileNotFoundError: nothing matches (the message says what was looked for).
    """
    if os.path.isdir(pattern):
        if split is None:
            raise ValueError("split is required when pattern is a dataset directory")
        files = sorted(glob.glob(os.path.join(pattern, f"{split}-*-of-*.tfrecord")))
        where = f"{pattern}/{split}-*-of-*.tfrecord"
    else:
        files = sorted(path for path in glob.glob(pattern) if not os.path.basename(path).startswith(".tmp-"))
        where = pattern
    excluded = {os.path.basename(name) for name in exclude}
    if excluded:
        files = [path for path in files if os.path.basename(path) not in excluded]
        where += f" (excluding {len(excluded)} shard(s))"
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {where}; build the dataset first "
                                "(python -m datasets.build ...)")
    return files


def normalize_depth(depth_mm: tf.Tensor, depth_range_mm: float = DEFAULT_DEPTH_RANGE_MM,
                    near_mm: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Per-image depth normalisation used everywhere in the project.

    Args:
      depth_mm: float32 [..., H, W, 1] camera z in mm, 0 = no data.
      depth_range_mm: depth span mapped onto (0, 1].
      near_mm: optional float32 [...] reference (nearest) depth; default: each image's nearest
        valid point.

    Returns:
      float32 [..., H, W, 1]: ``1 - (z - near) / depth_range_mm`` clipped to
      [MIN_FACE_DEPTH, 1] on valid pixels (nearer = larger), exactly 0 elsewhere.
    """
    depth_mm = tf.convert_to_tensor(depth_mm, tf.float32)
    valid = depth_mm > 0
    if near_mm is None:
        big = tf.fill(tf.shape(depth_mm), tf.constant(3.0e38, tf.float32))
        near_mm = tf.reduce_min(tf.where(valid, depth_mm, big), axis=[-3, -2, -1], keepdims=True)
    else:
        near_mm = tf.reshape(tf.cast(near_mm, tf.float32), tf.concat([tf.shape(near_mm), [1, 1, 1]], 0))
    relative = 1.0 - (depth_mm - near_mm) / depth_range_mm
    return tf.where(valid, tf.clip_by_value(relative, MIN_FACE_DEPTH, 1.0), tf.zeros_like(depth_mm))


def resize_rgb(rgb: tf.Tensor, image_size: int) -> tf.Tensor:
    """float32 [..., H, W, 3] in [0, 1] -> [..., S, S, 3] in [-1, 1] (bilinear, antialiased):
    how every model input image is made from a stored image."""
    return tf.image.resize(rgb, [image_size, image_size], antialias=True) * 2.0 - 1.0


def _nearest_valid_mm(depth_mm: tf.Tensor) -> tf.Tensor:
    valid = depth_mm > 0
    big = tf.fill(tf.shape(depth_mm), tf.constant(3.0e38, tf.float32))
    return tf.reduce_min(tf.where(valid, depth_mm, big))


def _ends_with(data: tf.Tensor, trailer: bytes) -> tf.Tensor:
    length = tf.strings.length(data)
    size = len(trailer)
    tail = tf.strings.substr(data, tf.maximum(length - size, 0), size)
    return tf.logical_and(length >= size, tf.equal(tail, trailer))


def _check(condition: tf.Tensor, what: str, shard: tf.Tensor, index: tf.Tensor) -> tf.Operation:
    return tf.debugging.Assert(condition, [
        f"corrupt TFRecord example ({what}) in shard", shard, "at record index", index,
        "- rebuild that shard (delete it and re-run the builder) or drop it from the pattern"],
        summarize=3)


def masked_resize(depth: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes float32 [..., H, W, 1] normalised depth to [..., size, size, 1] without blending
    faces into background (0): area resampling over valid pixels only, a pixel stays valid when
    more than half of its area was."""
    valid = tf.cast(depth > 0, tf.float32)
    summed = tf.image.resize(depth * valid, [size, size], method="area")
    weight = tf.image.resize(valid, [size, size], method="area")
    return tf.where(weight > 0.5, summed / tf.maximum(weight, 1e-6), tf.zeros_like(summed))


def _missing_check(available: tf.Tensor, key: str, zero_fill: Sequence[str], shard: tf.Tensor,
                   index: tf.Tensor) -> list:
    if key in zero_fill:
        return []
    return [tf.debugging.Assert(available, [
        f"example lacks the requested modality {key!r} (has_{key} = 0) in shard", shard,
        "at record index", index, f"- drop {key!r} from the requested modalities, use a "
        f"dataset that has it, or ask for zeros explicitly (zero_fill / --zero_fill_missing)"],
        summarize=3)]


def _decode_record(shard: tf.Tensor, index: tf.Tensor, serialized: tf.Tensor,
                   image_size: int, modalities: Sequence[str], depth_range_mm: float,
                   with_metadata: bool, zero_fill: Sequence[str] = ()) -> dict[str, tf.Tensor]:
    parsed = schema.parse_example(serialized)
    checks = [_check(tf.equal(parsed["schema_version"], schema.SCHEMA_VERSION),
                     "unsupported schema_version", shard, index)]
    rgb_bytes = parsed["rgb"]
    is_png = tf.equal(tf.strings.substr(rgb_bytes, 0, 4), b"\x89PNG")
    rgb_complete = tf.where(is_png, _ends_with(rgb_bytes, _PNG_TRAILER),
                            tf.logical_and(tf.io.is_jpeg(rgb_bytes), _ends_with(rgb_bytes, _JPEG_TRAILER)))
    checks.append(_check(rgb_complete, "rgb is not a complete PNG/JPEG", shard, index))
    height, width = parsed["height"], parsed["width"]

    def decode_png(key: str, channels: int, dtype: tf.DType) -> tf.Tensor:
        data = parsed[key]
        with tf.control_dependencies([_check(_ends_with(data, _PNG_TRAILER),
                                             f"{key} is not a complete PNG", shard, index)]):
            image = tf.io.decode_png(data, channels=channels, dtype=dtype)
        size_ok = tf.logical_and(tf.equal(tf.shape(image, tf.int64)[0], height),
                                 tf.equal(tf.shape(image, tf.int64)[1], width))
        with tf.control_dependencies([_check(size_ok, f"{key} size differs from rgb", shard, index)]):
            return tf.identity(image)

    with tf.control_dependencies(checks):
        rgb = tf.io.decode_image(rgb_bytes, channels=3, expand_animations=False)
    size_ok = tf.logical_and(tf.equal(tf.shape(rgb, tf.int64)[0], height),
                             tf.equal(tf.shape(rgb, tf.int64)[1], width))
    with tf.control_dependencies([_check(size_ok, "rgb size differs from height/width", shard, index)]):
        rgb = tf.image.convert_image_dtype(rgb, tf.float32)  # [0, 1]
    rgb.set_shape([None, None, 3])
    scale_y = tf.cast(image_size, tf.float32) / tf.cast(height, tf.float32)
    scale_x = tf.cast(image_size, tf.float32) / tf.cast(width, tf.float32)

    output: dict[str, tf.Tensor] = {}
    if "rgb" in modalities:
        output["rgb"] = resize_rgb(rgb, image_size)

    has_depth = tf.equal(parsed["has_depth"], 1)
    units_mm = tf.equal(parsed["depth_units"], b"mm")
    depth_keys = [key for key in ("depth", "neutral_depth", "gt_depth") if key in modalities]
    if depth_keys:
        def raw_depth(key: str) -> tf.Tensor:
            available = tf.equal(parsed["has_" + key], 1) if key != "depth" else has_depth
            if key in depth_keys:
                with tf.control_dependencies(_missing_check(available, key, zero_fill, shard,
                                                            index)):
                    available = tf.identity(available)
            return tf.cond(
                available,
                lambda: tf.cast(decode_png(key, 1, tf.uint16), tf.float32) * parsed["depth_scale_mm"],
                lambda: tf.zeros(tf.stack([height, width, 1]), tf.float32))

        main_depth = raw_depth("depth")
        near_mm = _nearest_valid_mm(main_depth)
        for key in depth_keys:
            values = main_depth if key == "depth" else raw_depth(key)
            # mm depth is normalised against the main depth's nearest point (companions share
            # the geometry); "normalized" depth is stored in (0, 1] already.
            normalised = tf.cond(units_mm,
                                 lambda v=values: normalize_depth(v, depth_range_mm, near_mm),
                                 lambda v=values: v)
            output[key] = masked_resize(normalised, image_size)
    if "mask" in modalities:
        has_mask = tf.equal(parsed["has_mask"], 1)
        with tf.control_dependencies(_missing_check(has_mask, "mask", zero_fill, shard, index)):
            has_mask = tf.identity(has_mask)
        mask = tf.cond(has_mask,
                       lambda: tf.image.resize(decode_png("mask", 1, tf.uint8), [image_size, image_size],
                                               method="nearest"),
                       lambda: tf.zeros([image_size, image_size, 1], tf.uint8))
        one_hot = tf.one_hot(tf.cast(mask[..., 0], tf.int32), schema.NUM_MASK_CLASSES)
        output["mask"] = one_hot * tf.cast(has_mask, tf.float32)

    landmarks = tf.reshape(parsed["landmarks5"], [schema.NUM_LANDMARKS, 2])
    known = tf.reduce_all(landmarks >= 0)
    output["landmarks5"] = tf.where(known, landmarks * tf.stack([scale_x, scale_y]), landmarks)
    output["label"] = tf.cast(parsed["label"], tf.int32)
    output["has_depth"] = has_depth
    output["has_mask"] = tf.equal(parsed["has_mask"], 1)
    if with_metadata:
        for key in METADATA_STRING_KEYS:
            output[key] = parsed[key]
        for key in METADATA_FLOAT_KEYS:
            output[key] = parsed[key]
        output["session"] = tf.cast(parsed["session"], tf.int32)
    return output


def _id_filter(example_ids: Sequence[str]):
    """A ``(shard, index, record) -> bool`` predicate keeping the records of ``example_ids``;
    it parses only the ``example_id`` feature."""
    wanted = sorted(set(str(example_id) for example_id in example_ids))
    if not wanted:
        raise ValueError("example_ids is empty: no example would be read")
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(wanted), tf.ones([len(wanted)], tf.int32)),
        default_value=0)
    feature = {"example_id": tf.io.FixedLenFeature([], tf.string, default_value="")}

    def keep(shard, index, record):
        del shard, index
        return tf.equal(table.lookup(tf.io.parse_single_example(record, feature)["example_id"]), 1)

    return keep


IMAGE_KEYS_BILINEAR = ("rgb",)
IMAGE_KEYS_DEPTH = ("depth", "neutral_depth", "gt_depth")


def augment_example(example: dict[str, tf.Tensor], seed: tf.Tensor, image_size: int,
                    max_crop_fraction: float = 0.1) -> dict[str, tf.Tensor]:
    """Random flip, small crop/scale (all images + landmarks), colour jitter (RGB only).

    Args:
      example: one decoded element (unbatched).
      seed: int32/int64 [2] stateless seed; the same seed gives the same augmentation.
      image_size: S, the (square) size of every image in ``example``.
      max_crop_fraction: crops keep between (1 - max_crop_fraction) and 1 of each side.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)
    example = dict(example)
    size = tf.cast(image_size, tf.float32)

    # Horizontal flip; the mask's classes have no left/right variants, landmarks swap pairs.
    flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
    for key in (k for k in (*IMAGE_KEYS_BILINEAR, *IMAGE_KEYS_DEPTH, "mask") if k in example):
        example[key] = tf.cond(flip, lambda v=example[key]: tf.reverse(v, axis=[1]),
                               lambda v=example[key]: v)
    landmarks = example["landmarks5"]
    known = tf.reduce_all(landmarks >= 0)
    flipped = tf.gather(tf.stack([size - 1.0 - landmarks[:, 0], landmarks[:, 1]], axis=1),
                        list(schema.LANDMARK_FLIP_ORDER))
    landmarks = tf.where(tf.logical_and(flip, known), flipped, landmarks)

    # Crop a random box (normalised coords) and resize it back to S x S.
    side = tf.random.stateless_uniform([], seeds[1], 1.0 - max_crop_fraction, 1.0)
    y0 = tf.random.stateless_uniform([], seeds[2], 0.0, 1.0 - side)
    x0 = tf.random.stateless_uniform([], seeds[3], 0.0, 1.0 - side)
    box = tf.reshape(tf.stack([y0, x0, y0 + side, x0 + side]), [1, 4])

    def crop(image: tf.Tensor, method: str) -> tf.Tensor:
        return tf.image.crop_and_resize(image[None], box, [0], [image_size, image_size],
                                        method=method)[0]

    if "rgb" in example:
        example["rgb"] = crop(example["rgb"], "bilinear")
    for key in (k for k in IMAGE_KEYS_DEPTH if k in example):
        valid = tf.cast(example[key] > 0, tf.float32)
        summed, weight = crop(example[key] * valid, "bilinear"), crop(valid, "bilinear")
        example[key] = tf.where(weight > 0.5, summed / tf.maximum(weight, 1e-6), tf.zeros_like(summed))
    if "mask" in example:
        example["mask"] = crop(example["mask"], "nearest")
    # Pixel coordinate p (pixel centres at p + 0.5) maps to (p + 0.5 - x0*S) / side - 0.5.
    offset = tf.stack([x0, y0]) * size
    moved = (landmarks + 0.5 - offset) / side - 0.5
    example["landmarks5"] = tf.where(known, moved, landmarks)

    if "rgb" in example:
        rgb = (example["rgb"] + 1.0) / 2.0
        rgb = tf.image.stateless_random_brightness(rgb, 0.1, seeds[4])
        rgb = tf.image.stateless_random_contrast(rgb, 0.8, 1.2, seeds[5])
        rgb = tf.image.stateless_random_saturation(rgb, 0.8, 1.2, seeds[6])
        rgb = tf.image.stateless_random_hue(rgb, 0.03, seeds[7])
        example["rgb"] = tf.clip_by_value(rgb, 0.0, 1.0) * 2.0 - 1.0
    return example


def make_dataset(pattern: str, split: Optional[str] = "train", batch_size: int = 16,
                 image_size: int = 64, modalities: Sequence[str] = ("rgb", "depth", "mask"),
                 augment: bool = False, shuffle: bool = False, repeat: bool = False,
                 seed: Optional[int] = None, deterministic: Optional[bool] = None,
                 drop_remainder: bool = False, with_metadata: bool = False,
                 depth_range_mm: float = DEFAULT_DEPTH_RANGE_MM,
                 shuffle_buffer: int = 2048, skip_examples: int = 0,
                 exclude_shards: Sequence[str] = (), zero_fill: Sequence[str] = (),
                 example_ids: Optional[Sequence[str]] = None) -> tf.data.Dataset:
    """Builds the batched input pipeline over TFRecord shards.

    Args:
      pattern: a dataset directory (uses ``<dir>/<split>-*-of-*.tfrecord``) or a file glob.
      split: split name when ``pattern`` is a directory.
      batch_size: batch size (the global batch under a distribution strategy).
      image_size: output size S (square); images are resized (RGB bilinear with antialias,
        depth area-resampled over valid pixels only, masks nearest).
      modalities: subset of ``MODALITIES``.
      augment: random flip / crop-scale / colour jitter (seeded per element when ``seed`` is set).
      shuffle: shuffle shard order and records.
      repeat: repeat forever.
      seed: makes shuffling and augmentation reproducible.
      deterministic: element order guarantee of parallel stages (None: tf.data default).
      drop_remainder: drop the last partial batch (static batch dimension).
      with_metadata: add ``example_id``, ``subject``, ``domain``, ``expression``, ``occlusion``
        (tf.string), ``session`` (int32), ``yaw_deg``/``pitch_deg``/``roll_deg`` (float32).
      depth_range_mm: span of :func:`normalize_depth`.
      shuffle_buffer: records in the shuffle buffer.
      skip_examples: records to skip after shuffling and repeating, BEFORE decoding (a run
        resumed at step N skips N * batch_size records without decoding them; the augmentation
        of every later record is the one it gets without the skip).
      exclude_shards: shard file names (or paths) to leave out, e.g. corrupt ones found by
        ``tf_rgbd.data.verify``.
      zero_fill: requested modalities that may be missing from an example and are then zeros
        (the caller weights with ``has_depth``/``has_mask``); any other missing requested
        modality stops iteration with an error naming the shard and record.
      example_ids: keep only these examples (e.g. a protocol's gallery); the others are
        dropped after reading their ``example_id`` and before anything else is decoded.

    Returns:
      A dataset of dicts: ``rgb`` float32 [B,S,S,3] in [-1, 1]; ``depth`` (and ``neutral_depth``,
      ``gt_depth`` when asked) float32 [B,S,S,1] in [0, 1], 0 = background; ``mask`` float32
      [B,S,S,7] one-hot (zeros when absent); ``label`` int32 [B]; ``has_depth``/``has_mask``
      bool [B]; ``landmarks5`` float32 [B,5,2] pixels at size S (-1 when unknown).
    """
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {MODALITIES}")
    files = list_shards(pattern, split, exclude_shards)
    autotune = tf.data.AUTOTUNE
    file_names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        file_names = file_names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def records_of(file_name: tf.Tensor) -> tf.data.Dataset:
        return tf.data.TFRecordDataset(file_name).enumerate().map(
            lambda index, record: (file_name, index, record))

    dataset = file_names.interleave(records_of, cycle_length=min(len(files), 8),
                                    num_parallel_calls=autotune,
                                    deterministic=deterministic)
    if example_ids is not None:
        dataset = dataset.filter(_id_filter(example_ids))
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    # Positions are counted on the raw records, before anything is decoded, so skipping records
    # (a resumed run) decodes nothing it skips and sees exactly the augmentation it would have.
    dataset = dataset.enumerate()
    if skip_examples:
        dataset = dataset.skip(int(skip_examples))
    modalities = tuple(modalities)
    dataset = dataset.map(
        lambda position, element: (position, _decode_record(
            element[0], element[1], element[2], image_size, modalities, depth_range_mm,
            with_metadata, tuple(zero_fill))),
        num_parallel_calls=autotune, deterministic=deterministic)
    if augment:
        # Unseeded runs draw a fresh base seed; seeded runs augment identically every time.
        base_seed = int(np.random.SeedSequence().entropy % (2**62)) if seed is None else int(seed)
        dataset = dataset.map(
            lambda position, example: augment_example(
                example, tf.stack([tf.constant(base_seed, tf.int64), position]), image_size),
            num_parallel_calls=autotune, deterministic=deterministic)
    else:
        dataset = dataset.map(lambda position, example: example)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    if deterministic is not None:
        options.deterministic = deterministic
    return dataset.with_options(options).prefetch(autotune)
