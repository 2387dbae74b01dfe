"""Evaluates depth generators (and the mean-face baseline) on a split; writes depth_metrics.json.

  python -m training.evaluate_depth --data_dir=/tmp/synth \
      --generators=DepthNet=/tmp/depthnet/generator.keras,cGAN=/tmp/cgan/generator.keras \
      --output_dir=/tmp/depth_eval

Metrics (see tf_rgbd/metrics/depth.py): mse_255_intersection (Table 1 protocol), mse_255 over
the face mask (Table 6), rmse_mm and abs_rel (metric-depth datasets), delta accuracies, mask
mIoU and pixel accuracy. Every flag is a field of ``tf_rgbd.config.depthnet.DepthEvalConfig``.
Prints one table and writes ``<output_dir>/depth_metrics.json`` (default: the first
generator's folder).
"""
from __future__ import annotations

import time
from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.depthnet import DepthEvalConfig

CONFIG_FLAGS = config_flags.define_config_flags(DepthEvalConfig(),
                                                required=("data_dir", "generators"))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.eval import depth as depth_eval  # noqa: PLC0415 (imports TensorFlow)

    started = time.time()
    report = depth_eval.evaluate_depth_generators(config)
    results = report["metrics"]
    print(depth_eval.format_depth_table(results))
    print(f"evaluated {len(results)} method(s) on {config.data_dir}:{config.eval_split} "
          f"({next(iter(results.values()))['num_images']} images, {time.time() - started:.1f} s); "
          f"wrote {report['path']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
