"""Config of ``make demo`` (``python -m training.demo``, :mod:`tf_rgbd.experiments.demo`): every
size of the end-to-end demo. ``QUICK`` is the ``make demo QUICK=1`` preset (``--quick``)."""
from __future__ import annotations

import dataclasses

from tf_rgbd.config.export import EXPORT_FORMATS

# Formats of the ``pipeline`` graph the demo exports and proves (issue 9's CPU formats).
DEMO_EXPORT_FORMATS = ("savedmodel", "onnx", "tflite_fp32", "tflite_int8")
# The artefact the gallery runs through, in order of preference (the edge artefact first);
# the first one that passed its parity gate is used and the choice is reported.
GALLERY_FORMATS = ("tflite_int8", "tflite_fp32", "onnx", "savedmodel", "keras")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The whole demo: data -> depth models -> augmentation -> recognizers -> export -> gallery.

    Attributes:
      output_dir: everything goes here (dataset, runs, export, gallery, report.html, report.md,
        metrics.json); a re-run continues where an interrupted one stopped.
      seed: seed of the dataset, of every model's weights and of the data order.
      run_eagerly: train every model without tracing its step (smoke runs of a few steps,
        where tracing costs more than training; see ``RunConfig.run_eagerly``).
      num_identities: synthetic identities (``test_fraction`` of them are the test identities
        that the protocol enrols and probes; >= 40 keeps one probe <= 1 rank-1 point).
      test_fraction: fraction of identities held out as the test split.
      images_per_identity: synthetic images per identity.
      data_image_size: side of the stored synthetic images (pixels).
      image_size: side every model trains and is evaluated at (divisible by 16).
      num_workers: processes rendering the synthetic dataset.
      depth_steps: optimiser steps of DepthNet and of the cGAN baseline.
      depth_batch_size: depth models' batch size.
      depth_base_filters: generator stem width (both depth models).
      depth_learning_rate: Adam learning rate of both depth models (the paper's 2e-4 underfits
        at this small budget; see bench/depth_table.py).
      recognizer_epochs: epochs of the recognizer and of the RGB baseline.
      recognizer_steps_per_epoch: optimiser steps per epoch.
      recognizer_batch_size: recognizer batch size.
      recognizer_learning_rate, recognizer_augment, recognizer_dropout_rate: the recognizers'
        SGD rate, input augmentation and embedding-head dropout. The paper's 0.1 / on / 0.4
        are for 3.3 M images and large batches; at this budget (600 steps of 32 over 1,440
        images) they kept ArcFace at its untrained loss (36.0 = s sin(m) + log C; training
        accuracy 1-3 %) and the embeddings collapsed (different-identity cosine 0.94-0.99),
        which no int8 artefact can reproduce. Measured on the demo's augmented data, RGB
        branch, ArcFace (64, 0.5), 20 x 30 steps, lr x0.1 at epochs 10 and 16: rank-1 40.8 % with 0.01 / off / 0;
        with a softmax head 39.2 % (0.01 / off / 0), 28.8 % (dropout 0.4), 25.7 % (augment),
        25.9 % (both); lr 0.1 did not learn at all.
      embedding_dim: f_id / f_style size.
      export_formats: formats the ``pipeline`` graph is exported to (each behind its parity
        gate; a gated-out artefact is reported as failed with its figures).
      calibration_samples: training examples calibrating the int8 artefacts.
      parity_samples: test examples compared per artefact.
      latency_formats: exported formats timed in the latency table (empty = every exported
        one); the Keras graph, the reference of every ratio, is always timed.
      latency_batch_sizes: batch sizes of the latency table.
      latency_repeats: timed runs per artefact and batch size (after one warm-up).
      gallery_probes_shown: probes shown with their top-3 gallery faces in the report.
      related_results: the related methods' tables (``python -m bench.related_methods`` writes
        them; '' = ``<output_dir>/related/results.json``); the report shows them when the file
        exists (the demo does not train the related methods itself: 3 methods x 3 seeds take
        ~30 min more).
      claims_results: ``bench/claims.py``'s results JSON; its verdicts open the report when it
        exists.
    """

    output_dir: str = "runs/demo"
    seed: int = 0
    run_eagerly: bool = False
    num_identities: int = 160
    test_fraction: float = 0.25
    images_per_identity: int = 12
    data_image_size: int = 64
    image_size: int = 48
    num_workers: int = 2
    depth_steps: int = 600
    depth_batch_size: int = 16
    depth_base_filters: int = 8
    depth_learning_rate: float = 2e-3
    recognizer_epochs: int = 20
    recognizer_steps_per_epoch: int = 30
    recognizer_batch_size: int = 32
    recognizer_learning_rate: float = 0.01
    recognizer_augment: bool = False
    recognizer_dropout_rate: float = 0.0
    embedding_dim: int = 64
    export_formats: tuple[str, ...] = DEMO_EXPORT_FORMATS
    calibration_samples: int = 64
    parity_samples: int = 128
    latency_formats: tuple[str, ...] = ()
    latency_batch_sizes: tuple[int, ...] = (1, 8)
    latency_repeats: int = 20
    gallery_probes_shown: int = 4
    related_results: str = "bench/results/related_methods.json"
    claims_results: str = "bench/results/claims.json"

    def __post_init__(self):
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be divisible by 16")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        unknown = sorted(set(self.export_formats) - set(EXPORT_FORMATS))
        if unknown:
            raise ValueError(f"export_formats: unknown {unknown}; choose from "
                             f"{list(EXPORT_FORMATS)}")
        unknown = sorted(set(self.latency_formats) - set(EXPORT_FORMATS) - {"keras"})
        if unknown:
            raise ValueError(f"latency_formats: unknown {unknown}; choose from "
                             f"{list(EXPORT_FORMATS)}")
        if not self.latency_batch_sizes or min(self.latency_batch_sizes) < 1:
            raise ValueError(f"latency_batch_sizes must be >= 1, got {self.latency_batch_sizes}")
        for name in ("num_identities", "images_per_identity", "depth_steps",
                     "recognizer_epochs", "recognizer_steps_per_epoch", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def test_identities(self) -> int:
        """Identities of the test split (the protocol's gallery subjects)."""
        return max(1, round(self.num_identities * self.test_fraction))


# ``make demo QUICK=1``: the same stages at sizes that finish in a few minutes (numbers are
# meaningless at this size; the default run is the one to quote).
QUICK = dict(num_identities=48, images_per_identity=8, data_image_size=48, image_size=32,
             depth_steps=60, depth_base_filters=4, recognizer_epochs=3,
             recognizer_steps_per_epoch=10, recognizer_batch_size=16, embedding_dim=32,
             calibration_samples=32, parity_samples=64, latency_repeats=5)
