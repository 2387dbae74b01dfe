"""Configs of the Siamese depth-only verifier (identity preservation of generated depth, after
Pini et al., "Learning to Generate Facial Depth Maps"): model, contrastive loss, optimiser,
training run and evaluation.

``training/train_depth_verifier.py`` generates its flags from :class:`DepthVerifierTrainingConfig`
and ``training/evaluate_depth_verifier.py`` from :class:`DepthVerifierEvalConfig`
(``tf_rgbd.config.flags``).
"""
from __future__ import annotations

import dataclasses

from tf_rgbd.config.run import RunConfig

# Files of a verifier run directory.
VERIFIER_FILE = "verifier.keras"
IDENTITIES_FILE = "verifier_identities.json"
METRICS_FILE = "depth_verification.json"


@dataclasses.dataclass(frozen=True)
class VerifierModelConfig:
    """The Siamese verifier: one IR-SE depth encoder applied to both depth maps of a pair.

    Attributes:
      backbone: IR-SE backbone of the shared encoder (``tiny``, ``ir_se18``, ``ir_se50``).
      image_size: S, the depth maps' side in pixels (divisible by 16).
      embedding_dim: size of the (L2-normalised) embedding.
      dropout_rate: dropout of the encoder's embedding head.
    """

    backbone: str = "tiny"
    image_size: int = 32
    embedding_dim: int = 64
    dropout_rate: float = 0.0

    def __post_init__(self):
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be divisible by 16")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")


@dataclasses.dataclass(frozen=True)
class ContrastiveLossConfig:
    """L = y d^2 + (1 - y) max(0, m - d)^2 (Hadsell et al. 2006), y = 1 for a genuine pair, d the
    Euclidean distance of the two L2-normalised embeddings (so d is in [0, 2]).

    Attributes:
      margin: m, the distance beyond which an impostor pair costs nothing (in [0, 2]).
    """

    margin: float = 1.0

    def __post_init__(self):
        if not 0.0 < self.margin <= 2.0:
            raise ValueError(f"margin must be in (0, 2] (distances of unit vectors), got "
                             f"{self.margin}")


@dataclasses.dataclass(frozen=True)
class VerifierOptimizerConfig:
    """Adam.

    Attributes:
      learning_rate: Adam learning rate.
    """

    learning_rate: float = 1e-3


@dataclasses.dataclass(frozen=True)
class DepthVerifierTrainingConfig:
    """Everything a verifier training run needs; saved as ``model_dir/config.json``.

    Pairs (balanced genuine / impostor, seeded by ``seed``) are drawn from the ground-truth
    depth of ``--train_split``. The identities of that split are divided: the last
    ``val_identity_fraction`` of them (sorted by label) never train the verifier; the
    evaluation chooses its acceptance threshold on their pairs (never on the test pairs).

    Attributes:
      val_identity_fraction: fraction of the training split's identities kept out of training
        for threshold selection (at least 2 identities either side).
    """

    model: VerifierModelConfig = VerifierModelConfig()
    loss: ContrastiveLossConfig = ContrastiveLossConfig()
    optimizer: VerifierOptimizerConfig = VerifierOptimizerConfig()
    run: RunConfig = RunConfig(batch_size=32, epochs=1, steps=300, steps_per_epoch=100,
                               checkpoint_every_steps=100)
    val_identity_fraction: float = 0.25

    def __post_init__(self):
        if not 0.0 < self.val_identity_fraction < 1.0:
            raise ValueError(f"val_identity_fraction must be in (0, 1), got "
                             f"{self.val_identity_fraction}")


@dataclasses.dataclass(frozen=True)
class DepthVerifierEvalConfig:
    """One evaluation of a trained verifier (``python -m training.evaluate_depth_verifier``).

    The same fixed, seeded pair list of ``eval_split`` identities is scored with ground-truth
    depth and with each generator's depth (every source preprocessed identically); the
    acceptance threshold is chosen on pairs of the verifier's validation identities (ground-truth
    depth of the training split), never on the evaluated pairs.

    Attributes:
      data_dir: dataset directory (with ground-truth depth and RGB).
      model_dir: the verifier's run directory (``training.train_depth_verifier``).
      generators: ``name=path`` entries, path a depth-generator run directory or its
        ``generator.keras`` (a bare path is named after its folder).
      eval_split: the split whose identities are verified (held out from everything).
      max_pairs: at most this many genuine and as many impostor pairs (balanced).
      pair_seed: seed of the evaluated and the validation pair lists.
      batch_size: inference batch size.
      output_dir: where depth_verification.json goes ('' = the verifier's run directory).
    """

    data_dir: str = ""
    model_dir: str = ""
    generators: tuple[str, ...] = ()
    eval_split: str = "test"
    max_pairs: int = 500
    pair_seed: int = 0
    batch_size: int = 32
    output_dir: str = ""

    def __post_init__(self):
        if self.max_pairs < 1 or self.batch_size < 1:
            raise ValueError(f"max_pairs and batch_size must be >= 1, got {self.max_pairs}, "
                             f"{self.batch_size}")
