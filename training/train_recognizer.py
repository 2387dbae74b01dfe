"""Train (and optionally evaluate) the segmentation-guided RGB-D recognizer.

One run::

  python -m training.train_recognizer --data_dir=DATA --model_dir=runs/recog \
      --modalities=rgb,depth,mask --losses=cls,sa,cmfl,dis --backbone=ir_se50

The full model and the RGB baseline, trained and evaluated by one command (each variant goes
to ``<model_dir>/<variant>``; the combined Table-4-style table is printed and written to
``<model_dir>/variants_summary.json``)::

  python -m training.train_recognizer --data_dir=DATA --model_dir=runs/recog \
      --variants=full,rgb_baseline --evaluate --backbone=tiny --image_size=64 \
      --embedding_dim=128 --batch_size=32 --epochs=10 --steps_per_epoch=14 \
      --learning_rate=0.1 --lr_decay_epochs=6,8,9

With an augmented dataset (D*, M*) add ``--depth_source=generated
--eval_depth_sources=generated,gt`` to train on D* and evaluate the same model with D* and with
Dgt. Every training flag is a field of ``tf_rgbd.config.recognizer.RecognizerExperimentConfig``
(``--helpfull``; ``--config_file=<run>/config.json`` re-runs a run); ``--variants`` accepts
every name of ``tf_rgbd.config.recognizer.VARIANTS`` (Table 7: t7_depth ... t7_rgbd_mask;
Table 8: t8_cls ... t8_all; full; rgb_baseline). Re-running the same command resumes from the
checkpoints.
"""
from __future__ import annotations

import os
from typing import Optional

from absl import flags

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config import recognizer as recognizer_config
from tf_rgbd.config.recognizer import DEPTH_SOURCES, RecognizerExperimentConfig

CONFIG_FLAGS = config_flags.define_config_flags(RecognizerExperimentConfig(),
                                                required=("data_dir", "model_dir"))
FLAGS = flags.FLAGS
flags.DEFINE_list("variants", [], "Named variants (tf_rgbd.config.recognizer.VARIANTS) to train "
                  "one after the other, each in <model_dir>/<variant>; empty = one run with "
                  "--modalities/--losses in <model_dir>.")
flags.DEFINE_bool("evaluate", False, "Evaluate every trained run on --protocol afterwards.")
flags.DEFINE_string("eval_data_dir", None, "Dataset holding the protocol (default: --data_dir).")
flags.DEFINE_string("protocol", "lock3dface_style", "Protocol name under <data>/protocols.")
flags.DEFINE_list("eval_depth_sources", [], f"Depth sources to evaluate, any of {DEPTH_SOURCES} "
                  "(default: --depth_source).")
flags.DEFINE_bool("flip_test", True, "Flip-test embeddings in the evaluation.")


def main(argv) -> Optional[int]:
    del argv
    base = CONFIG_FLAGS.config()
    unknown = sorted(set(FLAGS.eval_depth_sources) - set(DEPTH_SOURCES))
    if unknown:
        raise ValueError(f"--eval_depth_sources: unknown {unknown}; choose from {DEPTH_SOURCES}")
    from tf_rgbd import experiments  # noqa: PLC0415 (imports TensorFlow)

    if FLAGS.variants:
        runs = [recognizer_config.with_model_dir(
                    recognizer_config.apply_variant(base, name),
                    os.path.join(base.run.model_dir, name)) for name in FLAGS.variants]
    else:
        runs = [base]
    experiments.train_then_evaluate(runs, FLAGS.evaluate, FLAGS.eval_data_dir, FLAGS.protocol,
                                    FLAGS.eval_depth_sources, FLAGS.flip_test,
                                    summary_dir=base.run.model_dir if FLAGS.variants else None)
    return 0


if __name__ == "__main__":
    cli.run(main)
