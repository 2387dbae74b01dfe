"""Evaluates a trained recognizer run on a protocol: identification per probe subset (rank-1,
CMC) and verification (TAR@FAR, EER) for RGB, depth and the fused score.

  python -m training.evaluate_recognizer --data_dir=/tmp/s_generated \
      --model_dir=runs/recognizer/full --depth_source=gt

Every flag is a field of ``tf_rgbd.config.recognizer.RecognizerEvalConfig``. Writes
``recognition_metrics.json`` and pictures (CMC, ROC, attention maps, t-SNE) to
``--output_dir`` (default ``<model_dir>/eval_<protocol>_<depth_source>``) and prints the
identification and verification tables.
"""
from __future__ import annotations

from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.recognizer import RecognizerEvalConfig

CONFIG_FLAGS = config_flags.define_config_flags(RecognizerEvalConfig(),
                                                required=("data_dir", "model_dir"))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.eval import recognition  # noqa: PLC0415 (imports TensorFlow)

    metrics = recognition.evaluate_recognizer(config)
    print(metrics["tables"]["identification"])
    print()
    print(metrics["tables"]["verification"])
    print(f"metrics and pictures: {metrics['output_dir']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
