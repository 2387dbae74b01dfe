"""One tiny trained system shared by the deploy tests (session scope, built once):

source dataset (4 identities, 40x40 faces with mm depth and masks, a protocol) -> DepthNet
(initialised, G = 32) -> augment_dataset (D*, M*, gt_depth kept) -> recognizer (tiny
backbone, R = 16, rgb+depth+mask, depth_source=generated) trained 3 steps.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

SOURCE_SIZE = 40
GENERATOR_SIZE = 32
RECOGNIZER_SIZE = 16
NUM_IDS = 4
PROTOCOL = "tiny_protocol"


@dataclasses.dataclass(frozen=True)
class TinySystem:
    source_dir: str
    generator_path: str
    augmented_dir: str
    run_dir: str


def _face(identity: int, index: int, rng):
    from tf_rgbd.data import schema
    size = SOURCE_SIZE
    yy, xx = np.mgrid[0:size, 0:size]
    face = (yy - size / 2) ** 2 / 0.16 + (xx - size / 2) ** 2 / 0.12 < size ** 2
    colour = np.array([60 + 50 * identity, 200 - 40 * identity, 90 + 30 * (identity % 2)])
    rgb = np.clip(colour + rng.normal(0, 12, (size, size, 3)), 0, 255) * face[..., None]
    bump = 40.0 * np.exp(-((yy - 12 - 4 * identity) ** 2 + (xx - 20) ** 2) / 40.0)
    depth = np.where(face, 600.0 - bump - rng.uniform(0, 2, (size, size)), 0.0)
    mask = np.where(face, 1, 0).astype(np.uint8)
    mask[15:19, 11:29] = 3
    mask[27:31, 15:25] = 6
    return schema.FaceExample(
        example_id=f"id{identity}_{index}", rgb=rgb.astype(np.uint8), label=identity,
        subject=f"s{identity}", dataset="tiny", domain="synthetic",
        depth=depth.astype(np.float32), mask=mask,
        expression=("neutral", "smile", "neutral")[index % 3], yaw_deg=float(10 * (index % 2)))


def write_source_dataset(directory: str) -> str:
    from tf_rgbd.data import protocol as protocol_lib
    from tf_rgbd.data import writer
    rng = np.random.default_rng(0)

    def produce(task):
        yield _face(*task, rng)

    splits = {
        "train": writer.write_split(directory, "train",
                                    [(i, k) for i in range(NUM_IDS) for k in range(6)], produce,
                                    num_shards=1, progress=False),
        "test": writer.write_split(directory, "test",
                                   [(i, k) for i in range(NUM_IDS) for k in range(6, 9)],
                                   produce, num_shards=1, progress=False)}
    writer.write_manifest(directory, "tiny", [f"s{i}" for i in range(NUM_IDS)], splits)
    protocol_lib.save_protocol(protocol_lib.Protocol(
        name=PROTOCOL, dataset="tiny", split="test",
        gallery=tuple(f"id{i}_6" for i in range(NUM_IDS)),
        probes={"expression": tuple(f"id{i}_7" for i in range(NUM_IDS)),
                "pose": tuple(f"id{i}_8" for i in range(NUM_IDS))}),
        protocol_lib.protocol_path(directory, PROTOCOL))
    return directory


@pytest.fixture(scope="session")
def tiny_system(tmp_path_factory) -> TinySystem:
    import keras

    from tf_rgbd.augmentation import generated_rgbd
    from tf_rgbd.config.recognizer import (RecognizerExperimentConfig, RecognizerModelConfig,
                                           SGDConfig)
    from tf_rgbd.config.run import RunConfig
    from tf_rgbd.models.depthnet import DepthNetGenerator
    from tf_rgbd.models.loading import load_depth_generator, save_keras_model
    from tf_rgbd.training import recognizer_training

    root = tmp_path_factory.mktemp("tiny_system")
    keras.utils.set_random_seed(0)
    source_dir = write_source_dataset(str(root / "source"))
    # The generator is initialised, not trained: its training loop is covered by
    # tests/training, and 2 GAN steps change nothing the deploy tests look at (measured: 30 s
    # of the fixture's time on the shared CI machine).
    generator = DepthNetGenerator(image_size=GENERATOR_SIZE, base_filters=4, max_filters=8)
    generator(np.zeros([1, GENERATOR_SIZE, GENERATOR_SIZE, 3], np.float32))
    generator_path = save_keras_model(generator, str(root / "depthnet" / "generator.keras"))
    augmented_dir = str(root / "augmented")
    generated_rgbd.augment_dataset(load_depth_generator(generator_path), source_dir,
                                   augmented_dir, batch_size=8, keep_gt_depth=True,
                                   generator_path=generator_path, progress=False)
    run_dir = str(root / "recognizer")
    recognizer_training.run_training(RecognizerExperimentConfig(
        model=RecognizerModelConfig(backbone="tiny", image_size=RECOGNIZER_SIZE,
                                    embedding_dim=16, dropout_rate=0.0),
        optimizer=SGDConfig(learning_rate=0.05, lr_decay_epochs=()),
        run=RunConfig(data_dir=augmented_dir, model_dir=run_dir, batch_size=8, epochs=1,
                      steps_per_epoch=3, checkpoint_every_steps=100, augment=False,
                      image_grid_every_epochs=0, verbose="0", run_eagerly=True),
        depth_source="generated", variant="full"))
    return TinySystem(source_dir, generator_path, augmented_dir, run_dir)
