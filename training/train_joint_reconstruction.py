"""Train (and evaluate) joint 3D face reconstruction and recognition with identity/residual
shape disentangling (Liu et al., CVPR 2018).

  python -m training.train_joint_reconstruction --data_dir=/tmp/s --model_dir=runs/joint \
      --variant=disentangle_id --phase1_steps=300 --phase2_steps=150 --phase3_steps=300

Three phases, each in ``<model_dir>/phase<k>`` and resumable (re-run the same command);
finished phases are reused. ``--variant`` is the ablation row: ``single`` (no disentangling),
``disentangle``, ``disentangle_id`` (+ identification loss). ``--evaluate`` then reports the
shape RMSE (mm) per yaw bin on ``--eval_split``, rank-1 / TAR@FAR / EER of c_Id on
``--protocol`` and the inference time, and writes ``<model_dir>/joint_metrics.json``. Every
training flag is a field of ``tf_rgbd.config.joint_reconstruction.JointReconstructionConfig``
(``--helpfull``).
"""
from __future__ import annotations

from typing import Optional

from absl import flags

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.joint_reconstruction import JointReconstructionConfig

CONFIG_FLAGS = config_flags.define_config_flags(JointReconstructionConfig(),
                                                required=("data_dir", "model_dir"))
FLAGS = flags.FLAGS
flags.DEFINE_bool("evaluate", False, "Evaluate the trained model afterwards.")
flags.DEFINE_string("eval_split", "test", "Split evaluated with --evaluate.")
flags.DEFINE_string("protocol", "lock3dface_style", "Protocol (of --eval_split) for the "
                    "identification/verification figures; '' = shape only.")


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.experiments import joint_reconstruction  # noqa: PLC0415 (imports TensorFlow)
    from tf_rgbd.training import joint_reconstruction_training  # noqa: PLC0415

    if not FLAGS.evaluate:
        summary = joint_reconstruction_training.run_training(config)
        print(f"trained {summary['variant']}: {summary['model']}")
        return 0
    metrics = joint_reconstruction.train_and_evaluate(config, split=FLAGS.eval_split,
                                                      protocol=FLAGS.protocol or None)
    print(joint_reconstruction.format_metrics(metrics))
    return 0


if __name__ == "__main__":
    cli.run(main)
