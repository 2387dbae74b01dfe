"""Tiny configs and batches shared by the depth-model training tests."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tests import helpers
from tf_rgbd.config.depthnet import DepthModelConfig

IMAGE_SIZE = 32


def tiny_model_config(**overrides) -> DepthModelConfig:
    values = dict(image_size=IMAGE_SIZE, base_filters=8, max_filters=32,
                  discriminator_filters=8, discriminator_downsamples=2, cgan_hidden_units=16)
    values.update(overrides)
    return DepthModelConfig(**values)


def face_like_batch(batch_size: int = 4, size: int = IMAGE_SIZE, seed: int = 0) -> dict:
    """A batch shaped like the pipeline's: an ellipse 'face' whose depth and mask follow the
    image (so a generator can learn them), random colours, all flags set."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) * 2 - 1
    rgb = np.zeros([batch_size, size, size, 3], np.float32)
    depth = np.zeros([batch_size, size, size, 1], np.float32)
    classes = np.zeros([batch_size, size, size], np.int64)
    for index in range(batch_size):
        cx, cy = rng.uniform(-0.2, 0.2, 2)
        radius = ((xs - cx) / 0.6) ** 2 + ((ys - cy) / 0.8) ** 2
        face = radius < 1
        colour = rng.uniform(-0.5, 0.9, 3)
        rgb[index] = np.where(face[..., None], colour, -1.0) + rng.normal(0, 0.05, (size, size, 3))
        depth[index, ..., 0] = np.where(face, 1.0 - 0.5 * radius, 0.0)
        classes[index] = np.where(face, 1, 0)
        classes[index][face & (np.abs(xs - cx) < 0.1) & (np.abs(ys - cy) < 0.2)] = 5  # nose
    return {"rgb": tf.constant(np.clip(rgb, -1, 1)), "depth": tf.constant(depth),
            "mask": tf.one_hot(classes, 7, dtype=tf.float32),
            "has_depth": tf.ones([batch_size], tf.bool), "has_mask": tf.ones([batch_size], tf.bool)}


def random_batch(batch_size: int = 4, size: int = IMAGE_SIZE, seed: int = 0) -> dict:
    return {"rgb": helpers.random_images(batch_size, size, 3, seed=seed),
            "depth": helpers.random_images(batch_size, size, 1, seed=seed + 1, low=0.0, high=1.0),
            "mask": helpers.random_masks(batch_size, size, seed=seed + 2),
            "has_depth": tf.ones([batch_size], tf.bool), "has_mask": tf.ones([batch_size], tf.bool)}


def write_tiny_dataset(directory: str, size: int = IMAGE_SIZE, train: int = 8, test: int = 4,
                       train_shards: int = 2) -> str:
    """A schema-v1 dataset (train/test splits, mm depth, masks) written with the project writer."""
    from tf_rgbd.data import schema, writer

    def produce(index: int):
        batch = face_like_batch(batch_size=1, size=size, seed=index)
        rgb = np.round((batch["rgb"].numpy()[0] + 1) * 127.5).astype(np.uint8)
        normalised = batch["depth"].numpy()[0, ..., 0]
        depth_mm = np.where(normalised > 0, 500.0 + (1.0 - normalised) * 200.0, 0.0)
        mask = np.argmax(batch["mask"].numpy()[0], -1).astype(np.uint8)
        return [schema.FaceExample(example_id=f"e{index:03d}", rgb=rgb, label=index % 2,
                                   subject=f"s{index % 2}", dataset="tiny", depth=depth_mm,
                                   mask=mask)]

    results = {"train": writer.write_split(directory, "train", list(range(train)), produce,
                                           num_shards=train_shards, progress=False),
               "test": writer.write_split(directory, "test", list(range(100, 100 + test)),
                                          produce, num_shards=1, progress=False)}
    writer.write_manifest(directory, "tiny", ["s0", "s1"], results)
    return directory
