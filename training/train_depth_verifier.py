"""Trains the Siamese depth-only verifier (contrastive loss) on ground-truth depth pairs of the
training identities; resumes where it stopped.

  python -m training.train_depth_verifier --data_dir=/tmp/s --model_dir=runs/depth_verifier \
      --image_size=32 --batch_size=32 --steps=300

Every flag is a field of ``tf_rgbd.config.verifier.DepthVerifierTrainingConfig``
(``--helpfull``): ``--backbone``, ``--embedding_dim``, ``--margin`` (contrastive margin on the
distance of unit embeddings, default 1.0), ``--val_identity_fraction`` (training identities
kept out for the evaluation's threshold), and the runner's flags. Writes ``model_dir/config.json``,
``checkpoints/``, ``logs/``, ``training_summary.json``, ``verifier.keras`` and
``verifier_identities.json``.
"""
from __future__ import annotations

import logging
from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.verifier import DepthVerifierTrainingConfig

CONFIG_FLAGS = config_flags.define_config_flags(DepthVerifierTrainingConfig(),
                                                required=("data_dir", "model_dir"))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    # TensorFlow is imported here so that --num_logical_cpus can split the CPU before it starts.
    from tf_rgbd.training import callbacks as callbacks_lib  # noqa: PLC0415
    from tf_rgbd.training.verifier_training import train_depth_verifier  # noqa: PLC0415
    try:
        result = train_depth_verifier(config)
    except callbacks_lib.NonFiniteLossError as error:
        logging.error("%s", error)
        print(f"FAILED: {error}")
        return 1
    final = result.summary["final_epoch_metrics"]
    print(f"depth verifier: steps {result.start_step} -> {result.final_step} in "
          f"{result.seconds:.1f} s; final loss {final.get('loss', float('nan')):.4f}, pair "
          f"accuracy {final.get('pair_accuracy', float('nan')):.3f}; verifier: "
          f"{result.outputs['verifier']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
