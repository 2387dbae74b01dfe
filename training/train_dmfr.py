"""Trains demodalizing face recognition (DMFR; Zhai et al., AAAI 2021) or one of its CosFace
baselines, and optionally evaluates it (TAR@FAR on the general, cross-pose and cross-quality
probe sets; the Table 1 similarity analysis).

  python -m training.train_dmfr --data_dir=/tmp/s --domains_dir=/tmp/s_dmfr \
      --model_dir=runs/dmfr_meta --dmfr=meta --evaluate

``--dmfr=none`` is the CosFace baseline (real only; ``--mix_generated`` mixes real and
generated 1:1), ``meta|disentangle|filter`` the paper's modes. Every run first pre-trains with
a softmax classifier on the real data (``--pretrain_steps``, into ``<model_dir>/pretrain``; or
``--pretrain_from=<a pre-training run>``). Every training flag is a field of
``tf_rgbd.config.dmfr.DMFRExperimentConfig``; re-running the same command resumes.
"""
from __future__ import annotations

import json
import os
from typing import Optional

from absl import flags

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.dmfr import DMFRExperimentConfig

CONFIG_FLAGS = config_flags.define_config_flags(
    DMFRExperimentConfig(), required=("data_dir", "model_dir"))
FLAGS = flags.FLAGS
flags.DEFINE_bool("evaluate", False, "Evaluate the trained run on the test identities.")
flags.DEFINE_string("eval_split", "test", "Split of the held-out identities to evaluate on.")


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.training import dmfr_training  # noqa: PLC0415 (imports TensorFlow)

    summary = dmfr_training.run_training(config)
    metrics = ", ".join(f"{key} {value:.4g}"
                        for key, value in summary["final_epoch_metrics"].items())
    print(f"{config.method_name}: {summary['total_steps']} steps in {summary['seconds']} s; "
          f"{metrics}")
    if FLAGS.evaluate:
        if not config.domains_dir:
            raise ValueError("--evaluate needs --domains_dir (the cross-quality probes and the "
                             "similarity analysis use the generated test images)")
        from tf_rgbd.eval import dmfr as dmfr_eval  # noqa: PLC0415

        probe_sets = dmfr_eval.build_probe_sets(config.run.data_dir, config.domains_dir,
                                                config.model.image_size, FLAGS.eval_split)
        evaluation = dmfr_eval.evaluate_network(
            dmfr_training.load_dmfr_network(config.run.model_dir), probe_sets)
        print(dmfr_eval.format_tar_table({config.method_name: evaluation["verification"]}))
        print("similarity: " + json.dumps({key: round(value, 4) for key, value
                                           in evaluation["similarity"].items()}))
        path = os.path.join(config.run.model_dir, "dmfr_evaluation.json")
        from tf_rgbd import io_utils  # noqa: PLC0415

        io_utils.atomic_write_json(path, evaluation)
        print(f"evaluation: {path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
