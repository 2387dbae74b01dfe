"""Evaluates depth generators (and the mean-face baseline) on a split; writes depth_metrics.json.

  python -m training.evaluate_depth --data_dir=/tmp/synth \
      --generators=DepthNet=/tmp/depthnet/generator.keras,cGAN=/tmp/cgan/generator.keras

Metrics (see tf_rgbd/eval/depth.py): mse_255_intersection (Table 1 protocol), mse_255 over the
face mask (Table 6), rmse_mm and abs_rel (metric-depth datasets), delta accuracies, mask mIoU
and pixel accuracy. Prints one table and writes ``--output`` (default: depth_metrics.json next
to the first generator).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("data_dir", None, "Dataset directory.")
    flags.DEFINE_list("generators", [], "name=path/to/generator.keras entries (a bare path is "
                                        "named after its folder).")
    flags.DEFINE_string("split", "test", "Evaluated split.")
    flags.DEFINE_string("train_split", "train", "Split whose mean depth is the baseline.")
    flags.DEFINE_integer("image_size", 0, "Model input size (0: the generators' own).")
    flags.DEFINE_integer("batch_size", 16, "Batch size.")
    flags.DEFINE_float("depth_range_mm", 200.0, "Depth normalisation span (the pipeline's).")
    flags.DEFINE_boolean("mean_face", True, "Include the mean-face baseline row.")
    flags.DEFINE_boolean("masked", False, "Also evaluate D* (depth zeroed where the generator's "
                                          "own mask says background) of generators with a mask.")
    flags.DEFINE_string("output", None, "depth_metrics.json path.")
    flags.mark_flag_as_required("data_dir")


def parse_generator_entries(entries) -> dict[str, str]:
    """``["name=path", "path"]`` -> ``{name: path}``."""
    named = {}
    for entry in entries:
        name, _, path = entry.partition("=") if "=" in entry else ("", "", entry)
        name = name or os.path.basename(os.path.dirname(os.path.abspath(path))) or path
        if not os.path.exists(path):
            raise FileNotFoundError(f"--generators: {path} does not exist (train one with "
                                    "python -m training.train_depthnet)")
        named[name] = path
    return named


def main(argv) -> Optional[int]:
    del argv
    from tf_rgbd.models.depthnet import load_depth_generator

    from tf_rgbd import io_utils
    from tf_rgbd.eval import depth as depth_eval

    paths = parse_generator_entries(FLAGS.generators)
    generators = {name: load_depth_generator(path)
                  for name, path in paths.items()}
    image_size = FLAGS.image_size or next(
        (model.get_config().get("image_size") for model in generators.values()), None) or 64
    started = time.time()
    predictors = {}
    for name, model in generators.items():
        predictors[name] = depth_eval.generator_predictor(model)
        if FLAGS.masked and getattr(model, "use_mask_branch", False):
            predictors[f"{name} D*"] = depth_eval.generator_predictor(model, mask_background=True)
    results = depth_eval.evaluate_depth_models(
        FLAGS.data_dir, predictors,
        split=FLAGS.split, train_split=FLAGS.train_split, image_size=image_size,
        batch_size=FLAGS.batch_size, depth_range_mm=FLAGS.depth_range_mm,
        include_mean_face=FLAGS.mean_face)
    output = FLAGS.output or os.path.join(
        os.path.dirname(os.path.abspath(next(iter(paths.values())))) if paths else FLAGS.data_dir,
        "depth_metrics.json")
    io_utils.atomic_write_json(output, {
        "data_dir": FLAGS.data_dir, "split": FLAGS.split, "image_size": image_size,
        "generators": paths, "metrics": results})
    print(depth_eval.format_depth_table(results))
    print(f"evaluated {len(results)} method(s) on {FLAGS.data_dir}:{FLAGS.split} "
          f"({next(iter(results.values()))['num_images']} images, {time.time() - started:.1f} s); "
          f"wrote {output}")
    return 0


if __name__ == "__main__":
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    define_flags()
    app.run(main)
