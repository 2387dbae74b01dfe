"""Three-phase training of joint 3D face reconstruction and recognition (Liu et al., CVPR
2018) through the one runner. The library side of ``training/train_joint_reconstruction.py``::

    summary = run_training(JointReconstructionConfig(run=RunConfig(data_dir=..., model_dir=...)))
    model, config = load_joint_model(model_dir)

Phases (each a runner run in ``<model_dir>/phase<k>``, resumable from its checkpoints, and
initialised from the previous phase's newest checkpoint; a finished phase is reused):

I.   the encoder (IR-SE + FC) regresses the target latents, ``[identity_coeffs,
     expression_coeffs]`` of the generator, with the Euclidean ``latent_loss``;
II.  the decoders alone, on the frozen encoder's latents: f_Id to the identity's neutral shape
     minus s_bar, f_Res to the residual shape - neutral (single: f to shape - s_bar);
III. end to end: ``L = lambda_r L_R + L_C`` (L_C only for ``disentangle_id``).

Targets (:class:`ShapeTargets`): ``mesh`` recomputes the face-region vertices from each
record's coefficients with the generator's face model (exact, see
``tf_rgbd.data.synthetic.shape_targets``); ``depth_map`` takes the aligned depth map, average
pooled to ``depth_grid`` cells, as the shape and ``neutral_depth`` as the neutral shape.
s_bar is the mean neutral shape of the training split (over identities). The pipeline's flip
augmentation would mirror the face but not its mesh target, so ``run.augment`` is refused
with the mesh shape.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from typing import Any, Mapping, Optional

import keras
import numpy as np
import tensorflow as tf

from tf_rgbd import config as config_lib
from tf_rgbd.config.joint_reconstruction import (CONFIG_FILE, MODEL_FILE, PHASES,
                                                 JointReconstructionConfig)
from tf_rgbd.data import pipeline
from tf_rgbd.data import synthetic
from tf_rgbd.data.synthetic import shape_targets as shape_targets_lib
from tf_rgbd.losses import shape as shape_losses
from tf_rgbd.models import blocks, loading
from tf_rgbd.models.joint_reconstruction import (JointReconstructionModel,
                                                 joint_model_from_config)
from tf_rgbd.training import runner
from tf_rgbd.training import strategy as strategy_lib
from tf_rgbd.training.checkpointing import CHECKPOINT_SUBDIR, WEIGHTS_SUFFIX, weights_by_path
from tf_rgbd.training.recognizer_training import remap_labels, training_labels

SUMMARY_FILE = "joint_training_summary.json"
# Records whose landmarks are compared with the recomputed mesh (per split).
LANDMARK_CHECKS = 4


@dataclasses.dataclass
class ShapeTargets:
    """Per-example targets of one split, looked up by ``example_id`` in the input pipeline.

    Attributes:
      example_ids: str [M].
      labels: int [M] dataset labels.
      yaw_deg: float32 [M].
      identity_coeffs, expression_coeffs: float32 [M, K], [M, E] (K = E = 0 without).
      shape, neutral: float32 [M, N, C] mm (mesh only; None for depth_map, whose targets come
        from the decoded depth images).
      vertices: int64 [N] face-model vertex indices of the mesh target (mesh only).
    """

    example_ids: list
    labels: np.ndarray
    yaw_deg: np.ndarray
    identity_coeffs: np.ndarray
    expression_coeffs: np.ndarray
    shape: Optional[np.ndarray] = None
    neutral: Optional[np.ndarray] = None
    vertices: Optional[np.ndarray] = None

    def neutral_by_label(self) -> dict:
        """label -> the neutral shape [N, C] of that identity (mesh)."""
        out = {}
        for row, label in enumerate(self.labels.tolist()):
            out.setdefault(label, self.neutral[row])
        return out


@functools.lru_cache(maxsize=2)
def _face_model(morphable_model_dir: str) -> synthetic.FaceModel:
    if morphable_model_dir:
        return synthetic.FaceModel.from_3ddfa_dir(morphable_model_dir)
    return synthetic.FaceModel.parametric()


def face_model_for(config: JointReconstructionConfig) -> synthetic.FaceModel:
    """The generator's face model of the dataset (built once per process)."""
    return _face_model(config.morphable_model_dir)


def _read_records(data_dir: str, split: str) -> list:
    examples = []
    for path in pipeline.list_shards(data_dir, split):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            examples.append(tf.train.Example.FromString(record).features.feature)
    if not examples:
        raise ValueError(f"{data_dir}: split {split!r} has no examples")
    return examples


def load_shape_targets(config: JointReconstructionConfig, split: str,
                       model: Optional[synthetic.FaceModel] = None) -> ShapeTargets:
    """Reads the split's coefficients and labels and (mesh) recomputes the shape targets."""
    data_dir = config.run.data_dir
    features = _read_records(data_dir, split)
    ids = [f["example_id"].bytes_list.value[0].decode() for f in features]
    labels = np.array([f["label"].int64_list.value[0] for f in features], np.int64)
    yaw = np.array([f["yaw_deg"].float_list.value[0] for f in features], np.float32)

    def coeffs(key):
        rows = [np.asarray(f[key].float_list.value, np.float32) if key in f else
                np.zeros(0, np.float32) for f in features]
        sizes = {row.size for row in rows}
        if len(sizes) != 1:
            raise ValueError(f"{data_dir}/{split}: {key} has sizes {sorted(sizes)} across "
                             "examples; a synthetic split has one size")
        return np.stack(rows)

    identity, expression = coeffs("identity_coeffs"), coeffs("expression_coeffs")
    targets = ShapeTargets(ids, labels, yaw, identity, expression)
    if config.shape_source != "mesh":
        return targets
    model = model or face_model_for(config)
    vertices = shape_targets_lib.face_vertex_subset(model, config.num_shape_vertices)
    generator = synthetic.SyntheticConfig(num_identities=1, images_per_identity=1)
    for row in np.linspace(0, len(features) - 1, min(LANDMARK_CHECKS, len(features))).astype(int):
        f = features[row]
        shape_targets_lib.check_against_landmarks(
            model, generator, ids[row], identity[row], expression[row], yaw[row],
            f["pitch_deg"].float_list.value[0], f["roll_deg"].float_list.value[0],
            f["width"].int64_list.value[0], np.asarray(f["landmarks5"].float_list.value))
    pairs = [shape_targets_lib.shape_targets(model, vertices, identity[row], expression[row],
                                             ids[row]) for row in range(len(ids))]
    targets.shape = np.stack([pair[0] for pair in pairs])
    targets.neutral = np.stack([pair[1] for pair in pairs])
    targets.vertices = vertices
    return targets


def depth_map_shapes(batch: Mapping[str, tf.Tensor], grid: int, depth_range_mm: float
                     ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(shape, neutral [B, grid*grid, 1] mm, weights [B, grid*grid]) of depth-map batches:
    the normalised depth (nearer = larger, 0 = none) times ``depth_range_mm``, averaged over
    the valid pixels of each cell; a cell is valid where more than half of its pixels are
    valid in both maps."""
    def pooled(image):
        valid = tf.cast(image > 0, tf.float32)
        total = tf.nn.avg_pool2d(image * valid, _pool(image, grid), _pool(image, grid), "VALID")
        count = tf.nn.avg_pool2d(valid, _pool(image, grid), _pool(image, grid), "VALID")
        return total / tf.maximum(count, 1e-6) * depth_range_mm, count

    shape, shape_count = pooled(batch["depth"])
    neutral, neutral_count = pooled(batch["neutral_depth"])
    weights = tf.cast(tf.logical_and(shape_count > 0.5, neutral_count > 0.5), tf.float32)
    flat = lambda t: tf.reshape(t, [tf.shape(t)[0], grid * grid, 1])  # noqa: E731
    return flat(shape), flat(neutral), tf.reshape(weights, [tf.shape(weights)[0], grid * grid])


def _pool(image, grid: int) -> int:
    size = image.shape[1]
    if size % grid:
        raise ValueError(f"depth_grid {grid} must divide the image size {size}")
    return size // grid


def make_joint_dataset(config: JointReconstructionConfig, split: str, targets: ShapeTargets,
                       labels: Optional[tuple] = None, training: bool = False,
                       skip_examples: int = 0, excluded: tuple = ()) -> tf.data.Dataset:
    """Batches of ``rgb``, ``label`` (remapped to ``labels`` order when given), ``latent``
    (the phase I target, [B, K + E]), ``shape``, ``neutral`` [B, N, C] and ``weights``
    [B, N] in loss units (``shape_unit_mm``), plus ``yaw_deg`` and (not training)
    ``example_id``."""
    run = config.run
    if training and run.augment and config.shape_source == "mesh":
        raise ValueError("--augment flips faces but not their mesh shape targets; train the "
                         "joint reconstruction with --augment=false")
    depth = config.shape_source == "depth_map"
    modalities = ("rgb", "depth", "neutral_depth") if depth else ("rgb",)
    dataset = pipeline.make_dataset(
        run.data_dir, split=split, batch_size=run.batch_size,
        image_size=config.model.image_size, modalities=modalities,
        augment=training and run.augment, shuffle=training, repeat=training,
        seed=run.seed if training else None, deterministic=True, drop_remainder=training,
        with_metadata=True, depth_range_mm=run.depth_range_mm, skip_examples=skip_examples,
        exclude_shards=excluded)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(targets.example_ids), tf.range(len(targets.example_ids), dtype=tf.int64)),
        default_value=-1)
    latents = tf.constant(np.concatenate([targets.identity_coeffs, targets.expression_coeffs],
                                         axis=1), tf.float32)
    unit = float(config.shape_unit_mm)
    if not depth:
        shapes = tf.constant(targets.shape / unit, tf.float32)
        neutrals = tf.constant(targets.neutral / unit, tf.float32)

    def add_targets(batch):
        rows = table.lookup(batch["example_id"])
        with tf.control_dependencies([tf.debugging.assert_non_negative(
                rows, message="an example_id of the batch has no shape target")]):
            rows = tf.identity(rows)
        out = {"rgb": batch["rgb"], "label": batch["label"], "yaw_deg": batch["yaw_deg"],
               "latent": tf.gather(latents, rows)}
        if depth:
            shape, neutral, weights = depth_map_shapes(batch, config.depth_grid,
                                                       run.depth_range_mm)
            out.update(shape=shape / unit, neutral=neutral / unit, weights=weights)
        else:
            out["shape"] = tf.gather(shapes, rows)
            out["neutral"] = tf.gather(neutrals, rows)
            out["weights"] = tf.ones(tf.shape(out["shape"])[:2], tf.float32)
        if not training:
            out["example_id"] = batch["example_id"]
        return out

    dataset = dataset.map(add_targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return remap_labels(dataset, labels) if labels is not None else dataset


def mean_neutral_shape(config: JointReconstructionConfig, targets: ShapeTargets) -> np.ndarray:
    """s_bar [N, C] mm: the mean neutral shape of the training split's identities (mesh), or
    the mean valid neutral depth cell (depth_map; cells never valid stay 0)."""
    if config.shape_source == "mesh":
        return shape_targets_lib.mean_shape(list(targets.neutral_by_label().values()))
    unit = float(config.shape_unit_mm)
    total = count = 0.0
    for batch in make_joint_dataset(config, config.run.train_split, targets):
        neutral = batch["neutral"].numpy() * unit
        weights = batch["weights"].numpy()[..., None]
        total = total + (neutral * weights).sum(axis=0)
        count = count + weights.sum(axis=0)
    return (total / np.maximum(count, 1.0)).astype(np.float32)


class JointReconstructionTrainer(keras.Model):
    """The ``train_step`` of one phase (1, 2 or 3) of a :class:`JointReconstructionModel`.

    Logged metrics: ``loss`` (what the phase minimises), ``loss_latent`` (phase I),
    ``loss_id`` / ``loss_res`` (phase II, disentangled), ``loss_r`` (L_R, phases II-III),
    ``loss_c`` and ``acc`` (phase III with the identification loss), ``rmse_mm`` (phases
    II-III: the batch's shape RMSE in mm).
    """

    def __init__(self, model: JointReconstructionModel, phase: int, lambda_r: float = 1.0,
                 identification_loss: bool = True, shape_unit_mm: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase}")
        self.model = model
        self.phase = int(phase)
        self.lambda_r = float(lambda_r)
        self.identification_loss = bool(identification_loss)
        self.shape_unit_mm = float(shape_unit_mm)
        names = ["loss"]
        if phase == 1:
            names.append("loss_latent")
        else:
            names += ["loss_r", "rmse_mm"]
            if phase == 2 and model.disentangled:
                names += ["loss_id", "loss_res"]
            if phase == 3 and self.identification_loss:
                names += ["loss_c", "acc"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def trained_variables(self) -> list:
        model = self.model
        if self.phase == 1:
            return model.encoder.trainable_variables + model.latent_head.trainable_variables
        if self.phase == 2:
            return [v for decoder in model.decoders.values() for v in decoder.trainable_variables]
        variables = (model.encoder.trainable_variables + model.latent_head.trainable_variables
                     + [v for decoder in model.decoders.values()
                        for v in decoder.trainable_variables])
        if self.identification_loss:
            variables += model.classifier.trainable_variables
        return variables

    def compute_losses(self, batch: Mapping, training: bool) -> dict:
        model = self.model
        weights = batch["weights"]
        if self.phase == 1:
            latent = model.encode(batch["rgb"], training=training)
            value = shape_losses.latent_loss(latent, batch["latent"])
            return {"loss": value, "loss_latent": value}
        if self.phase == 2:
            # The decoders learn on the frozen encoder's latents (inference mode).
            latent = tf.stop_gradient(model.encode(batch["rgb"], training=False))
            outputs = model.decode(latent)
            mean = tf.convert_to_tensor(model.mean_shape)[None]
            if model.disentangled:
                loss_id = shape_losses.shape_loss(outputs["delta_id"], batch["neutral"] - mean,
                                                  weights)
                loss_res = shape_losses.shape_loss(outputs["delta_res"],
                                                   batch["shape"] - batch["neutral"], weights)
                results = {"loss": loss_id + loss_res, "loss_id": loss_id, "loss_res": loss_res}
            else:
                value = shape_losses.shape_loss(outputs["delta"], batch["shape"] - mean, weights)
                results = {"loss": value}
            results["loss_r"] = shape_losses.shape_loss(outputs["shape"], batch["shape"],
                                                        weights)
        else:
            latent = model.encode(batch["rgb"], training=training)
            outputs = model.decode(latent)
            loss_r = shape_losses.shape_loss(outputs["shape"], batch["shape"], weights)
            results = {"loss_r": loss_r}
            loss_c = 0.0
            if self.identification_loss:
                features = model.identity_features(latent)
                labels = tf.cast(batch["label"], tf.int32)
                loss_c = shape_losses.classification_loss(model.classify(features, labels),
                                                          labels)
                results["loss_c"] = loss_c
                results["acc"] = tf.reduce_mean(tf.cast(tf.equal(tf.cast(tf.argmax(
                    model.classify(features), axis=-1), tf.int32), labels), tf.float32))
            results["loss"] = shape_losses.joint_loss(loss_r, loss_c, self.lambda_r)
        results["rmse_mm"] = self.shape_unit_mm * tf.reduce_mean(shape_losses.per_example_rmse(
            outputs["shape"], batch["shape"], weights))
        return results

    def _update(self, results: Mapping) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(results[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        variables = self.trained_variables()
        with tf.GradientTape() as tape:
            results = self.compute_losses(data, training=True)
            objective = self.optimizer.scale_loss(strategy_lib.replica_scaled(results["loss"]))
        gradients = tape.gradient(objective, variables)
        self.optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables)
                                        if g is not None])
        return self._update(results)

    def test_step(self, data):
        return self._update(self.compute_losses(data, training=False))


class JointPhaseTask(runner.TrainingTask):
    """One phase as a runner task (run directory ``<model_dir>/phase<k>``)."""

    resume_invariant = ("model", "variant", "shape_source", "num_shape_vertices", "depth_grid",
                        "lambda_r", "shape_unit_mm", "num_classes", "latent_id_dim",
                        "latent_res_dim")

    def __init__(self, config: JointReconstructionConfig, phase: int, targets: ShapeTargets,
                 labels: tuple, mean_shape_mm: np.ndarray):
        self.config = config
        self.phase = phase
        self.targets = targets
        self.labels = labels
        self.mean_shape_mm = mean_shape_mm
        self.name = f"joint {config.variant} phase {phase}"

    def build(self, context: runner.RunContext) -> runner.BuiltTrainer:
        config = self.config
        model = joint_model_from_config(config, *self.mean_shape_mm.shape)
        model.set_mean_shape(self.mean_shape_mm / config.shape_unit_mm)
        trainer = JointReconstructionTrainer(
            model, self.phase, config.lambda_r, config.identification_loss,
            config.shape_unit_mm, name=f"joint_trainer_phase{self.phase}")
        trainer.built = True
        optimizer = keras.optimizers.Adam(config.learning_rate)
        if context.loss_scaling:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trainer.compile(optimizer=optimizer, jit_compile=config.run.jit_compile,
                        run_eagerly=config.run.run_eagerly)
        blocks.set_fused_batch_norm_training(trainer, not config.run.jit_compile)
        strategy_lib.build_optimizers([(optimizer, trainer.trained_variables())])
        return runner.BuiltTrainer(trainer, {"model": model, "optimizer": optimizer})

    def train_dataset(self, context: runner.RunContext, skip_examples: int) -> tf.data.Dataset:
        dataset = make_joint_dataset(self.config, self.config.run.train_split, self.targets,
                                     self.labels, training=True, skip_examples=skip_examples,
                                     excluded=context.excluded_shards)
        return dataset.map(lambda batch: {k: v for k, v in batch.items() if k != "yaw_deg"})

    def initialize_from(self, built: runner.BuiltTrainer, path: str) -> str:
        """Initialises from a previous phase's run directory (its newest checkpoint) or a
        checkpoint prefix: every variable of the encoder (IR-SE + latent FC) must be there;
        the decoders' and the classifier's are taken where the checkpoint has them with the
        same shapes (a previous phase of the same variant; phase I of another variant gives
        the encoder only). s_bar stays this run's. Reading the checkpoint builds no second
        model (loading a ``.keras`` file would)."""
        prefix = (tf.train.latest_checkpoint(os.path.join(path, CHECKPOINT_SUBDIR))
                  if os.path.isdir(path) else path)
        if not prefix or not tf.io.gfile.exists(prefix + ".index"):
            raise FileNotFoundError(f"--init_from={path}: no checkpoint there (a phase run "
                                    "directory or a checkpoint prefix)")
        target = built.trainer.model
        stored = dict(tf.train.list_variables(prefix))
        wanted, missing = {}, []
        for key, variable in weights_by_path(target).items():
            name = (f"model{WEIGHTS_SUFFIX}/{key.replace('.', '..')}/.ATTRIBUTES/"
                    "VARIABLE_VALUE")
            part = key.split(".")[1] if key.count(".") else key
            if key.endswith("mean_shape"):
                continue
            if name in stored and list(stored[name]) == list(variable.shape):
                wanted[key] = variable
            elif part in ("encoder", "latent_head"):
                missing.append(key)
        if missing:
            raise ValueError(f"--init_from={path}: its encoder differs from this run's "
                             f"(backbone, image size or latent sizes), e.g. {missing[:2]}")
        checkpoint = tf.train.Checkpoint(**{f"model{WEIGHTS_SUFFIX}": tf.train.Checkpoint(
            **wanted)})
        checkpoint.restore(prefix).expect_partial().assert_existing_objects_matched()
        parts = sorted({key.split(".")[1] for key in wanted if key.count(".")})
        return f"{len(wanted)} variables ({', '.join(parts)}) of {prefix}"

    def save_outputs(self, built: runner.BuiltTrainer, context: runner.RunContext
                     ) -> dict[str, str]:
        path = os.path.join(self.config.run.model_dir, MODEL_FILE)
        return {"model": loading.save_keras_model(built.trainer.model, path)}

    def summary_extra(self, context: runner.RunContext) -> dict[str, Any]:
        return {"phase": self.phase, "variant": self.config.variant,
                "num_classes": self.config.num_classes,
                "shape_points": int(self.mean_shape_mm.shape[0])}


def resolve_config(config: JointReconstructionConfig, targets: ShapeTargets, labels: tuple
                   ) -> JointReconstructionConfig:
    """``num_classes`` and the latent sizes filled from the training split's targets."""
    id_dim = config.model.id_dim or targets.identity_coeffs.shape[1]
    res_dim = config.model.res_dim or targets.expression_coeffs.shape[1]
    if not id_dim or not res_dim:
        raise ValueError(f"{config.run.data_dir}: the split has no identity/expression "
                         "coefficients; set --id_dim and --res_dim and --phase1_steps=0")
    if config.phase1_steps and (id_dim, res_dim) != (targets.identity_coeffs.shape[1],
                                                     targets.expression_coeffs.shape[1]):
        raise ValueError(f"phase I regresses the latents onto the coefficients "
                         f"({targets.identity_coeffs.shape[1]} identity, "
                         f"{targets.expression_coeffs.shape[1]} expression); --id_dim={id_dim}"
                         f" / --res_dim={res_dim} differ (use 0, or --phase1_steps=0)")
    return dataclasses.replace(config, num_classes=len(labels), latent_id_dim=int(id_dim),
                               latent_res_dim=int(res_dim))


def phase_dir(model_dir: str, phase: int) -> str:
    return os.path.join(model_dir, f"phase{phase}")


def _finished(directory: str, steps: int) -> bool:
    summary = os.path.join(directory, runner.SUMMARY_FILE)
    if not (os.path.exists(summary) and os.path.exists(os.path.join(directory, MODEL_FILE))):
        return False
    with open(summary, encoding="utf-8") as handle:
        return json.load(handle).get("total_steps") == steps


def run_training(config: JointReconstructionConfig,
                 strategy: Optional[tf.distribute.Strategy] = None) -> dict:
    """Trains the three phases (each resumable; finished phases are reused) and returns the
    summary (also ``<model_dir>/joint_training_summary.json``): per-phase runner summaries,
    ``model`` (the final ``joint_model.keras``) and the resolved config."""
    root = config.run.model_dir
    if not config.run.data_dir or not root:
        raise ValueError("joint reconstruction: --data_dir and --model_dir are required")
    labels = training_labels(config.run.data_dir, config.run.train_split)
    targets = load_shape_targets(config, config.run.train_split)
    config = resolve_config(config, targets, labels)
    if not any(config.phase_steps(phase) for phase in PHASES):
        raise ValueError("every phase has 0 steps (--phase1_steps ...): nothing to train")
    mean_shape_mm = mean_neutral_shape(config, targets)
    os.makedirs(root, exist_ok=True)
    config_lib.save_json(config, os.path.join(root, CONFIG_FILE))
    previous, phases = config.run.init_from or None, {}
    for phase in PHASES:
        steps = config.phase_steps(phase)
        if not steps:
            continue
        directory = phase_dir(root, phase)
        phase_config = dataclasses.replace(config, run=dataclasses.replace(
            config.run, model_dir=directory, steps=steps,
            steps_per_epoch=min(config.run.steps_per_epoch or steps, steps),
            checkpoint_every_steps=min(config.run.checkpoint_every_steps, steps),
            init_from=previous))
        if _finished(directory, steps):
            logging.info("joint %s: phase %d finished earlier, reused", config.variant, phase)
            with open(os.path.join(directory, runner.SUMMARY_FILE), encoding="utf-8") as handle:
                phases[phase] = json.load(handle)
        else:
            task = JointPhaseTask(phase_config, phase, targets, labels, mean_shape_mm)
            phases[phase] = runner.run(phase_config, task, strategy=strategy).summary
        previous = directory
    if not phases:
        raise ValueError("every phase has 0 steps: nothing to train")
    summary = {"variant": config.variant, "model": os.path.join(previous, MODEL_FILE),
               "phases": {str(k): v for k, v in phases.items()},
               "config": config_lib.to_dict(config)}
    from tf_rgbd import io_utils  # noqa: PLC0415
    io_utils.atomic_write_json(os.path.join(root, SUMMARY_FILE), summary)
    return summary


def load_joint_model(model_dir: str) -> tuple[JointReconstructionModel, JointReconstructionConfig]:
    """The final model of a run (the last trained phase's ``joint_model.keras``) and its
    resolved config."""
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{config_path} not found: is {model_dir} a run directory of "
                                "training/train_joint_reconstruction.py?")
    config = config_lib.load_json(JointReconstructionConfig, config_path)
    for phase in reversed(PHASES):
        path = os.path.join(phase_dir(model_dir, phase), MODEL_FILE)
        if config.phase_steps(phase) and os.path.exists(path):
            return loading.load_keras_model(path), config
    raise FileNotFoundError(f"{model_dir}: no trained phase ({MODEL_FILE}) yet; train first")
