"""Source ``synthetic``: the embedded synthetic RGB-D face generator (tf_rgbd.data.synthetic).

Identities 0..N_train-1 form the ``train`` split and the last ``round(N * test_fraction)``
identities the ``test`` split (disjoint identities; label = identity index). The test split gets
the Lock3DFace-style protocol (``protocols/lock3dface_style.json``).
"""
from __future__ import annotations

from typing import Any, Optional

from tf_rgbd.data.sources import BuildPlan
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import protocol as protocol_lib
from tf_rgbd.data import synthetic

DATASET_NAME = "synthetic"
PREVIEW_IDENTITIES = 6


class SyntheticProducer:
    """Renders one sample spec; the face model is built lazily once per process.

    Picklable: only the generator config travels to worker processes.
    """

    def __init__(self, config: synthetic.SyntheticConfig):
        self.config = config
        self._model: Optional[synthetic.FaceModel] = None

    def __getstate__(self) -> dict:
        return {"config": self.config, "_model": None}

    def model(self) -> synthetic.FaceModel:
        if self._model is None:
            self._model = synthetic.build_face_model(self.config)
        return self._model

    def __call__(self, spec: Any):
        return [synthetic.render_sample(self.model(), spec, self.config)]


def generator_config(config: BuildConfig) -> synthetic.SyntheticConfig:
    return synthetic.SyntheticConfig(
        num_identities=config.num_identities, images_per_identity=config.images_per_identity,
        image_size=config.image_size, seed=config.seed,
        morphable_model_dir=config.morphable_model_dir)


def split_identities(num_identities: int, test_fraction: float) -> tuple[range, range]:
    """(train identities, test identities): the last ones are held out, at least one each."""
    if num_identities < 2:
        raise ValueError("the synthetic source needs at least 2 identities (train + test)")
    num_test = min(num_identities - 1, max(1, round(num_identities * test_fraction)))
    return range(num_identities - num_test), range(num_identities - num_test, num_identities)


def plan(config: BuildConfig) -> BuildPlan:
    gen_config = generator_config(config)
    specs = synthetic.plan_samples(gen_config)
    train_ids, test_ids = split_identities(config.num_identities, config.test_fraction)
    producer = SyntheticProducer(gen_config)

    def preview_examples():
        first_images = [spec for spec in specs if spec.image_index in (0, 1, 2)]
        chosen = [spec for spec in first_images if spec.identity < PREVIEW_IDENTITIES]
        return [example for spec in chosen for example in producer(spec)]

    def make_protocols(records):
        return [protocol_lib.lock3dface_style_protocol(records["test"], DATASET_NAME)]

    return BuildPlan(
        dataset_name=DATASET_NAME,
        class_names=[synthetic.subject_name(i) for i in range(config.num_identities)],
        splits={"train": [s for s in specs if s.identity in train_ids],
                "test": [s for s in specs if s.identity in test_ids]},
        produce=producer,
        task_name=lambda spec: f"{synthetic.subject_name(spec.identity)}/img{spec.image_index:04d}",
        make_protocols=make_protocols,
        preview_examples=preview_examples,
        extra={"generator": {"num_identities": config.num_identities,
                             "images_per_identity": config.images_per_identity,
                             "train_identities": len(train_ids), "test_identities": len(test_ids)}},
    )
