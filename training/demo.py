"""`make demo`: the whole system end to end on the embedded synthetic RGB-D dataset.

  python -m training.demo --output_dir=runs/demo

Steps (an interrupted demo resumes: dataset shards, checkpoints and finished runs are kept):
  1. build the synthetic RGB-D dataset (shards, manifest, protocols, preview sheet);
  2. train DepthNet (the segmentation-aware depth GAN) on its train split;
  3. evaluate depth + mask on the test split against the mean-face baseline;
  4. turn the dataset into a generated RGB-D one (RGB with background removed, D*, M*), keeping
     the ground-truth depth beside D*;
  5. train and evaluate the segmentation-guided recognizer on RGB + D* + M* and the RGB baseline
     (Lock3DFace-style protocol: rank-1 per probe subset, TAR@FAR, EER; D* and Dgt at test);
and writes ``<output_dir>/report.md`` with every measured figure.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

from absl import flags

from tf_rgbd import cli, io_utils
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import writer
from tf_rgbd.data.build import build_dataset

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "runs/demo", "Where the demo writes everything.")
flags.DEFINE_integer("num_identities", 40, "Synthetic identities.")
flags.DEFINE_integer("images_per_identity", 30, "Synthetic images per identity.")
flags.DEFINE_integer("image_size", 112, "Side of the stored synthetic images (pixels).")
flags.DEFINE_integer("num_workers", 2, "Processes rendering the synthetic dataset.")
flags.DEFINE_integer("seed", 0, "Seed of the whole demo.")
flags.DEFINE_integer("model_image_size", 64, "Side the models train at (the stored images are "
                     "resized by the input pipeline).")
flags.DEFINE_integer("depthnet_steps", 1000, "DepthNet optimiser steps (batch 16).")
flags.DEFINE_integer("depthnet_base_filters", 8, "DepthNet generator stem width.")
flags.DEFINE_float("depthnet_learning_rate", 2e-3, "DepthNet Adam learning rate (the paper's 2e-4 "
                   "underfits the face at this small budget; see bench/depth_table.py).")
flags.DEFINE_integer("recognizer_epochs", 10, "Recognizer epochs.")
flags.DEFINE_integer("recognizer_steps_per_epoch", 20, "Recognizer optimiser steps per epoch.")
flags.DEFINE_integer("recognizer_batch_size", 32, "Recognizer global batch size.")


@dataclasses.dataclass
class DemoContext:
    """Paths and results shared by the demo steps (results end up in the report)."""

    output_dir: str
    dataset_dir: str
    generator_path: str = ""
    report_sections: list = dataclasses.field(default_factory=list)
    timings: dict = dataclasses.field(default_factory=dict)


def step_build_dataset(context: DemoContext) -> None:
    config = BuildConfig(
        source="synthetic", output_dir=context.dataset_dir, image_size=FLAGS.image_size,
        num_identities=FLAGS.num_identities, images_per_identity=FLAGS.images_per_identity,
        num_workers=FLAGS.num_workers, seed=FLAGS.seed, num_shards=8,
        preview=os.path.join(context.dataset_dir, "preview.png"))
    manifest = build_dataset(config)
    summary = writer.summarize_manifest(manifest)
    print(summary)
    print(f"preview sheet: {manifest['extra']['preview']}")
    context.report_sections.append(
        "## 1. Synthetic RGB-D dataset\n\n"
        f"`{context.dataset_dir}` — built in {manifest['extra']['build_seconds']:.1f} s "
        f"(including shards kept from an earlier run).\n\n```\n{summary}\n```\n\n"
        f"Preview (RGB / depth / mask): `{manifest['extra']['preview']}`\n")


def step_train_depthnet(context: DemoContext) -> None:
    from tf_rgbd.config.depthnet import (DepthLossWeights, DepthModelConfig, DepthTrainingConfig,
                                         OptimizerConfig)
    from tf_rgbd.config.run import RunConfig
    from tf_rgbd.training.depth_training import train_depth_model

    config = DepthTrainingConfig(
        model=DepthModelConfig(arch="depthnet", image_size=FLAGS.model_image_size,
                               base_filters=FLAGS.depthnet_base_filters),
        losses=DepthLossWeights(),
        optimizer=OptimizerConfig(learning_rate=FLAGS.depthnet_learning_rate),
        run=RunConfig(data_dir=context.dataset_dir, model_dir=_path(context, "depthnet"),
                      val_split="test", batch_size=16, steps=FLAGS.depthnet_steps,
                      steps_per_epoch=100, seed=FLAGS.seed, verbose="2"))
    result = train_depth_model(config)
    context.generator_path = result.outputs["generator"]
    context.report_sections.append(
        "## 2. DepthNet training\n\n"
        f"`{result.model_dir}`: steps {result.start_step} -> {result.final_step} "
        f"({result.steps_per_second:.2f} steps/s this run, {result.seconds:.0f} s), "
        f"{FLAGS.model_image_size}x{FLAGS.model_image_size}, batch 16, base filters "
        f"{FLAGS.depthnet_base_filters}, Adam lr {FLAGS.depthnet_learning_rate:g}; generator: "
        f"`{context.generator_path}`. TensorBoard: "
        f"`tensorboard --logdir {result.model_dir}/logs`.\n")


def step_evaluate_depth(context: DemoContext) -> None:
    from tf_rgbd.eval import depth as depth_eval
    from tf_rgbd.models.loading import load_depth_generator

    generator = load_depth_generator(context.generator_path)
    results = depth_eval.evaluate_depth_models(
        context.dataset_dir, {"DepthNet": depth_eval.generator_predictor(generator)},
        image_size=FLAGS.model_image_size)
    path = _path(context, "depthnet", "depth_metrics.json")
    io_utils.atomic_write_json(path, results)
    table = depth_eval.format_depth_table(results)
    print(table)
    context.report_sections.append(
        "## 3. Depth and mask estimation on the test identities\n\n"
        f"`{path}` (mse_255_* on depth normalised to [0, 255] per image; δ accuracies; mask "
        f"mIoU / pixel accuracy):\n\n```\n{table}\n```\n")


def step_augment(context: DemoContext) -> None:
    from tf_rgbd.augmentation.generated_rgbd import augment_dataset
    from tf_rgbd.models.loading import load_depth_generator

    generator = load_depth_generator(context.generator_path)
    manifest, stats = augment_dataset(generator, context.dataset_dir, _path(context, "generated"),
                                      keep_gt_depth=True, generator_path=context.generator_path)
    print(writer.summarize_manifest(manifest))
    context.report_sections.append(
        "## 4. 2D -> RGB-D augmentation\n\n"
        f"`{_path(context, 'generated')}`: {manifest['example_count']} examples with RGB "
        "(background removed by M*), D*, M* and the ground-truth depth kept beside D* "
        f"(`gt_depth`). Generator throughput: {_stats_text(stats)}.\n")


def step_recognizer(context: DemoContext) -> None:
    from tf_rgbd import experiments as experiments_lib
    from tf_rgbd.config import recognizer as recognizer_config
    from tf_rgbd.config.run import RunConfig

    base = recognizer_config.RecognizerExperimentConfig(
        model=recognizer_config.RecognizerModelConfig(
            backbone="tiny", image_size=FLAGS.model_image_size, embedding_dim=128),
        optimizer=recognizer_config.SGDConfig(
            lr_decay_epochs=_decay_epochs(FLAGS.recognizer_epochs)),
        run=RunConfig(data_dir=_path(context, "generated"),
                      batch_size=FLAGS.recognizer_batch_size, epochs=FLAGS.recognizer_epochs,
                      steps_per_epoch=FLAGS.recognizer_steps_per_epoch,
                      checkpoint_every_steps=500, seed=FLAGS.seed, verbose="2"),
        depth_source="generated")
    experiments = [recognizer_config.with_model_dir(recognizer_config.apply_variant(base, name),
                                                    _path(context, "recognizer", name))
                   for name in ("full", "rgb_baseline")]
    summary = experiments_lib.train_then_evaluate(
        experiments, evaluate=True, eval_depth_sources=("generated", "gt"),
        summary_dir=_path(context, "recognizer"))
    context.report_sections.append(
        "## 5. Segmentation-guided RGB-D recognition (Lock3DFace-style protocol)\n\n"
        "`full` = RGB + D* + M* with all four losses; `rgb_baseline` = the RGB branch alone. "
        "The full model is evaluated with generated depth (D*) and with ground-truth depth "
        f"(Dgt). Runs: `{_path(context, 'recognizer')}`.\n\n```\n{summary['table']}\n```\n")


def _path(context: DemoContext, *parts: str) -> str:
    return os.path.join(context.output_dir, *parts)


def _decay_epochs(epochs: int) -> tuple[int, ...]:
    """The paper's 6/10/17-of-20 schedule scaled to ``epochs``."""
    return tuple(sorted({max(1, round(epochs * fraction)) for fraction in (0.3, 0.5, 0.85)}))


def _stats_text(stats) -> str:
    if dataclasses.is_dataclass(stats):
        return ", ".join(f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
                         for key, value in dataclasses.asdict(stats).items())
    return str(stats)


STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("build synthetic dataset", step_build_dataset),
    ("train DepthNet", step_train_depthnet),
    ("evaluate depth", step_evaluate_depth),
    ("augment 2D -> RGB-D", step_augment),
    ("train + evaluate recognizer", step_recognizer),
]


def write_report(context: DemoContext) -> str:
    lines = ["# tf-rgbd demo report", "",
             f"Command: `python -m training.demo --output_dir={context.output_dir}` "
             f"(seed {FLAGS.seed}).", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in context.timings.items()]
    lines += ["", *context.report_sections]
    path = os.path.join(context.output_dir, "report.md")
    io_utils.atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv) -> int:
    del argv
    output_dir = os.path.abspath(FLAGS.output_dir)
    context = DemoContext(output_dir=output_dir,
                          dataset_dir=os.path.join(output_dir, "synthetic"))
    os.makedirs(output_dir, exist_ok=True)
    for number, (name, step) in enumerate(STEPS, start=1):
        print(f"\n=== [{number}/{len(STEPS)}] {name} ===", flush=True)
        started = time.time()
        step(context)
        context.timings[name] = time.time() - started
    report = write_report(context)
    print(f"\ndemo finished in {sum(context.timings.values()):.0f} s; report: {report}")
    return 0


if __name__ == "__main__":
    cli.run(main)
