"""Evaluates a trained depth verifier on fixed pairs of held-out identities with ground-truth
depth and with each generator's depth; writes depth_verification.json.

  python -m training.evaluate_depth_verifier --data_dir=/tmp/s \
      --model_dir=runs/depth_verifier --generators=DepthNet=runs/depthnet,cGAN=runs/cgan

Every flag is a field of ``tf_rgbd.config.verifier.DepthVerifierEvalConfig``. The pairs
(``--max_pairs`` genuine + as many impostor, ``--pair_seed``) are the same for every depth
source; the threshold is chosen on pairs of the verifier's held-out training identities. Prints
accuracy, AUC, EER and TAR@FAR=1e-2 per source and writes
``<output_dir>/depth_verification.json`` (default: the verifier's run directory) with the ROC.
"""
from __future__ import annotations

import time
from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.verifier import DepthVerifierEvalConfig

CONFIG_FLAGS = config_flags.define_config_flags(DepthVerifierEvalConfig(),
                                                required=("data_dir", "model_dir"))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.eval import depth_verification  # noqa: PLC0415 (imports TensorFlow)

    started = time.time()
    report = depth_verification.evaluate_depth_verifier(config)
    print(depth_verification.format_table(report))
    print(f"{len(report['pairs'])} pairs of {config.data_dir}:{config.eval_split} "
          f"({time.time() - started:.1f} s); wrote {report['path']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
