"""The training-loop settings every trainer shares (``tf_rgbd.training.runner``)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from tf_rgbd.config import choice

# tf.distribute strategies (tf_rgbd.training.strategy.build_strategy).
STRATEGY_NAMES = ("default", "mirrored", "multi_worker")
# Keras dtype policies a run may train under.
PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# Keras fit verbosity.
VERBOSITY = ("auto", "0", "1", "2")
# What a run does with a shard that fails verification.
ON_CORRUPT_SHARD = ("fail", "skip")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run: data, run directory, schedule, distribution, precision, checkpoints.

    Attributes:
      data_dir: training dataset directory (``python -m datasets.build`` output).
      model_dir: run directory (config.json, checkpoints/, logs/, the trained models).
      train_split: split the model trains on.
      val_split: split evaluated at the end of every epoch ('' = no validation).
      batch_size: GLOBAL batch size (per replica = batch_size / replicas).
      epochs: epochs of ``steps_per_epoch`` steps (ignored when ``steps`` > 0).
      steps: total optimiser steps (0: ``epochs * steps_per_epoch``).
      steps_per_epoch: optimiser steps per epoch (0: one pass over the split).
      strategy: tf.distribute strategy: default (one device), mirrored (local GPUs, or logical
        CPUs), multi_worker (MultiWorkerMirroredStrategy from TF_CONFIG).
      num_logical_cpus: mirrored on a CPU-only machine: split the CPU into this many logical
        devices (0: use the devices as they are); tests the distributed code on one CPU.
      mixed_precision: dtype policy: float32, mixed_float16 (GPU; loss scaling) or
        mixed_bfloat16 (CPUs with AVX-512 BF16, TPUs).
      jit_compile: XLA-compile the train and test steps.
      run_eagerly: run the train and test steps eagerly, without tracing them: for debugging,
        and for smoke runs of a few steps, where tracing costs more than the steps (a 2-step
        tiny recognizer run: 29.5 -> 17.9 CPU-s; far slower per step at real sizes).
      fused_batch_norm: train batch norm through TensorFlow's fused kernel (one op forward, one
        backward; IR-SE-50 bfloat16 step 7.30 -> 5.09 s on a 2-core CPU). False keeps Keras'
        op-by-op layer (two-pass moments, 1.7-3x less rounding): for runs compared to within
        float rounding, e.g. 1 vs 2 workers. Always off under jit_compile (XLA fuses it).
      augment: the pipeline's random flip / crop / colour jitter.
      seed: seed of the weights, the data order and the augmentation.
      init_from: fine-tune from a run directory, a checkpoint prefix or a .keras file (used only
        when the run directory has no checkpoint to resume).
      checkpoint_every_steps: checkpoint period in optimiser steps (also saved at the end).
      max_to_keep: checkpoints kept.
      image_grid_every_epochs: TensorBoard image grid period in epochs.
      depth_range_mm: span of the pipeline's per-image depth normalisation (mm).
      verify_shards: check every training/validation shard against its sidecar (sha256,
        record count) before training starts (parallel, with progress).
      on_corrupt_shard: a shard that fails verification: fail (stop, naming it) or skip (leave
        it out, counted and logged, the epoch's example count adjusted); skip verifies first.
      verbose: Keras fit verbosity: auto, 0, 1 or 2.
    """

    data_dir: str = ""
    model_dir: str = ""
    train_split: str = "train"
    val_split: str = ""
    batch_size: int = 16
    epochs: int = 10
    steps: int = 0
    steps_per_epoch: int = 0
    strategy: str = choice("default", STRATEGY_NAMES)
    num_logical_cpus: int = 0
    mixed_precision: str = choice("float32", PRECISION_POLICIES)
    jit_compile: bool = False
    run_eagerly: bool = False
    fused_batch_norm: bool = True
    augment: bool = True
    seed: int = 0
    init_from: Optional[str] = None
    checkpoint_every_steps: int = 200
    max_to_keep: int = 3
    image_grid_every_epochs: int = 1
    depth_range_mm: float = 200.0
    verify_shards: bool = False
    on_corrupt_shard: str = choice("fail", ON_CORRUPT_SHARD)
    verbose: str = choice("auto", VERBOSITY)

    def __post_init__(self):
        if self.strategy not in STRATEGY_NAMES:
            raise ValueError(f"strategy must be one of {STRATEGY_NAMES}, got {self.strategy!r}")
        if self.mixed_precision not in PRECISION_POLICIES:
            raise ValueError(f"mixed_precision must be one of {PRECISION_POLICIES}, got "
                             f"{self.mixed_precision!r}")
        if str(self.verbose) not in VERBOSITY:
            raise ValueError(f"verbose must be one of {VERBOSITY}, got {self.verbose!r}")
        if self.batch_size < 1 or self.epochs < 1 or self.steps < 0 or self.steps_per_epoch < 0:
            raise ValueError(f"bad schedule: batch_size={self.batch_size}, epochs={self.epochs}, "
                             f"steps={self.steps}, steps_per_epoch={self.steps_per_epoch}")
        if self.checkpoint_every_steps < 1 or self.max_to_keep < 1:
            raise ValueError("checkpoint_every_steps and max_to_keep must be >= 1")
        if self.on_corrupt_shard not in ON_CORRUPT_SHARD:
            raise ValueError(f"on_corrupt_shard must be one of {ON_CORRUPT_SHARD}, got "
                             f"{self.on_corrupt_shard!r}")
        if self.run_eagerly and self.jit_compile:
            raise ValueError("run_eagerly and jit_compile exclude each other (XLA compiles the "
                             "traced step)")
        if self.num_logical_cpus < 0:
            raise ValueError(f"num_logical_cpus must be >= 0, got {self.num_logical_cpus}")

    @property
    def keras_verbose(self):
        """``verbose`` as ``fit`` takes it ("auto" or an int)."""
        return int(self.verbose) if str(self.verbose).isdigit() else self.verbose
