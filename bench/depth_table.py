"""Trains DepthNet, DepthNet without its mask branch and the cGAN baseline with the same budget on the
same synthetic data, evaluates them with the mean-face baseline, and prints one table.

  python -m bench.depth_table                       # builds the synthetic data itself
  python -m bench.depth_table --data_dir=/tmp/synth --steps=600 --output_dir=/tmp/depth_bench

Rows: methods; columns: the metrics of tf_rgbd/metrics/depth.py (mse_255_intersection is the
paper's Table 1 protocol: on the support common to the ground truth and EVERY method, whose
coverage is printed; deltas on metric depth where the data is metric). Writes ``<output_dir>/depth_table.json`` (and every run directory) and
``bench/results/depth_table.json``.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Optional

from absl import flags

from tf_rgbd import benchmarks, cli

FLAGS = flags.FLAGS

# name -> DepthModelConfig overrides; every method shares the widths, data and step budget.
METHODS = {
    "DepthNet": {"arch": "depthnet"},
    "DepthNet without mask branch": {"arch": "depthnet", "use_mask_branch": False},
    "cGAN (Pini et al.)": {"arch": "cgan", "norm": "batch"},
}


def define_flags() -> None:
    flags.DEFINE_string("data_dir", "", "Dataset directory; empty: build a synthetic one in "
                                        "--output_dir/data.")
    flags.DEFINE_string("output_dir", "", "Where data, runs and the JSON go (default: a new "
                                          "temporary directory).")
    flags.DEFINE_integer("num_identities", 64, "Synthetic data: identities (25% held out).")
    flags.DEFINE_integer("images_per_identity", 6, "Synthetic data: images per identity.")
    flags.DEFINE_integer("image_size", 64, "Image size.")
    flags.DEFINE_integer("steps", 1000, "Optimiser steps per method (the shared budget).")
    flags.DEFINE_integer("batch_size", 16, "Batch size.")
    flags.DEFINE_integer("base_filters", 8, "Generator / discriminator base width.")
    flags.DEFINE_float("learning_rate", 2e-3, "Adam learning rate (both optimisers; the paper's "
                                              "2e-4 needs many times the steps).")
    flags.DEFINE_boolean("augment", True, "The pipeline's flip / crop / colour augmentation.")
    flags.DEFINE_boolean("masked_rows", True, "Also report DepthNet's D* (depth zeroed where "
                                              "its own mask says background, as "
                                              "augment_dataset stores it) as an extra row.")
    flags.DEFINE_list("methods", list(METHODS), f"Subset of {list(METHODS)}.")
    flags.DEFINE_integer("seed", 0, "Seed of data order, augmentation and weights.")
    flags.DEFINE_boolean("run_eagerly", False, "Train without tracing the steps (smoke runs of "
                         "a few steps; see RunConfig.run_eagerly).")


def build_synthetic_data(output_dir: str, num_identities: int, images_per_identity: int,
                         image_size: int, seed: int = 1) -> str:
    from tf_rgbd.data.build import build_dataset  # noqa: PLC0415
    from tf_rgbd.config.data import BuildConfig  # noqa: PLC0415

    if not os.path.exists(os.path.join(output_dir, "manifest.json")):
        build_dataset(BuildConfig(source="synthetic", output_dir=output_dir,
                                  num_identities=num_identities,
                                  images_per_identity=images_per_identity,
                                  image_size=image_size, num_shards=4, seed=seed),
                      progress=False)
    return output_dir


def run_benchmark(data_dir: str, work_dir: str, methods, image_size: int, steps: int,
                  batch_size: int, base_filters: int, learning_rate: float, seed: int,
                  augment: bool = True, masked_rows: bool = True, run_eagerly: bool = False):
    """Trains each method, evaluates all of them; returns (results, seconds per method).

    Every method row evaluates the raw depth head (the same rule for all). With
    ``masked_rows``, methods with a mask head also get a ``<name> D*`` row.
    """
    from tf_rgbd.config.depthnet import (DepthModelConfig, DepthTrainingConfig,  # noqa: PLC0415
                                         OptimizerConfig)
    from tf_rgbd.config.run import RunConfig  # noqa: PLC0415
    from tf_rgbd.eval import depth as depth_eval  # noqa: PLC0415
    from tf_rgbd.models.loading import load_depth_generator  # noqa: PLC0415
    from tf_rgbd.training.depth_training import train_depth_model  # noqa: PLC0415

    predictors, seconds = {}, {}
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {list(METHODS)}")
        model_dir = os.path.join(work_dir, "runs",
                                 name.split(" (")[0].replace(" --", "_").replace(" ", "_"))
        config = DepthTrainingConfig(
            model=DepthModelConfig(image_size=image_size, base_filters=base_filters,
                                   max_filters=base_filters * 8,
                                   discriminator_filters=base_filters, **METHODS[name]),
            optimizer=OptimizerConfig(learning_rate=learning_rate),
            run=RunConfig(data_dir=data_dir, model_dir=model_dir, batch_size=batch_size,
                          steps=steps, steps_per_epoch=min(steps, 100), val_split="",
                          augment=augment, seed=seed, checkpoint_every_steps=steps,
                          verbose="2", run_eagerly=run_eagerly))
        started = time.time()
        result = train_depth_model(config)
        seconds[name] = time.time() - started
        generator = load_depth_generator(result.outputs["generator"])
        predictors[name] = depth_eval.generator_predictor(generator)
        if masked_rows and getattr(generator, "use_mask_branch", False):
            predictors[f"{name} D*"] = depth_eval.generator_predictor(generator,
                                                                      mask_background=True)
    results = depth_eval.evaluate_depth_models(data_dir, predictors, image_size=image_size,
                                               batch_size=batch_size)
    return results, seconds


def main(argv) -> Optional[int]:
    del argv
    from tf_rgbd import io_utils  # noqa: PLC0415
    from tf_rgbd.eval import depth as depth_eval  # noqa: PLC0415

    started = time.time()
    work_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix="depth_table_")
    data_dir = FLAGS.data_dir or build_synthetic_data(
        os.path.join(work_dir, "data"), FLAGS.num_identities, FLAGS.images_per_identity,
        FLAGS.image_size)
    results, seconds = run_benchmark(data_dir, work_dir, FLAGS.methods, FLAGS.image_size,
                                     FLAGS.steps, FLAGS.batch_size, FLAGS.base_filters,
                                     FLAGS.learning_rate, FLAGS.seed, FLAGS.augment,
                                     FLAGS.masked_rows, FLAGS.run_eagerly)
    output = os.path.join(work_dir, "depth_table.json")
    report = {"data_dir": data_dir, "steps": FLAGS.steps, "batch_size": FLAGS.batch_size,
              "base_filters": FLAGS.base_filters, "image_size": FLAGS.image_size,
              "learning_rate": FLAGS.learning_rate, "augment": FLAGS.augment,
              "train_seconds": seconds, "metrics": results}
    io_utils.atomic_write_json(output, report)
    print(f"wrote {benchmarks.write_results(__file__, 'depth_table', report)}")
    print(f"\nDepth estimation on {data_dir} (test split, "
          f"{next(iter(results.values()))['num_images']} images; {FLAGS.steps} steps x batch "
          f"{FLAGS.batch_size} per method, base width {FLAGS.base_filters}, "
          f"{FLAGS.image_size}x{FLAGS.image_size}):")
    print(depth_eval.format_depth_table(results))
    first = next(iter(results.values()))
    print(f"common support: {100 * first['support_coverage']:.1f}% of the ground-truth face "
          f"pixels (every method's prediction valid there); deltas on "
          f"{'metric depth (mm)' if first['delta_scale_mm'] else 'the normalised scale'}; "
          "coverage per method: " + ", ".join(
              f"{name} {100 * row['coverage']:.1f}%"
              + ("" if row["in_common_support"] else " (below the minimum: left out of the "
                 "support, its support columns not comparable)")
              for name, row in results.items()))
    baseline = results[depth_eval.MEAN_FACE]["mse_255_intersection"]
    for name in (n for n in results if n != depth_eval.MEAN_FACE):
        value = results[name]["mse_255_intersection"]
        print(f"  {name}: mse_255_intersection {value:.1f} vs mean-face {baseline:.1f} "
              f"({'beats' if value < baseline else 'does NOT beat'} the baseline)"
              + (f"; trained in {seconds[name]:.0f} s" if name in seconds else ""))
    print(f"total {time.time() - started:.0f} s; wrote {output}")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
