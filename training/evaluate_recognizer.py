"""Evaluate a trained recognizer run on a protocol (identification + verification + pictures).

  python -m training.evaluate_recognizer --data_dir=DATA --model_dir=runs/recog \
      --protocol=lock3dface_style --depth_source=gt

``--depth_source=generated`` evaluates the same model with D* instead of Dgt (needs an augmented
dataset). Writes ``recognition_metrics.json``, ``cmc_methods.png``, ``cmc_subsets.png``,
``roc.png``, ``tsne.png`` and (with a mask branch) ``attention.png`` to ``--output_dir``
(default ``<model_dir>/eval_<protocol>_<depth_source>``) and prints the Table-4-style
identification table and the verification table.
"""
from __future__ import annotations

import logging

from absl import app, flags

from tf_rgbd import config as config_lib
from tf_rgbd.config import recognizer as recognizer_config
from tf_rgbd.config.recognizer import RecognizerEvalConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Dataset directory holding the protocol's split.")
flags.DEFINE_string("model_dir", None, "Trained run directory.")
flags.DEFINE_string("protocol", "lock3dface_style", "Protocol name under <data_dir>/protocols.")
flags.DEFINE_enum("depth_source", "gt", recognizer_config.DEPTH_SOURCES,
                  "gt: ground-truth depth; generated: D* of an augmented dataset.")
flags.DEFINE_string("output_dir", "", "Output folder ('' = <model_dir>/eval_<protocol>_<src>).")
flags.DEFINE_integer("batch_size", 64, "Embedding batch size.")
flags.DEFINE_bool("flip_test", True, "Sum the embeddings of the face and its mirror image.")
flags.DEFINE_integer("max_rank", 10, "CMC ranks 1..max_rank.")
flags.DEFINE_integer("tsne_identities", 9, "Identities in the t-SNE picture.")
flags.DEFINE_integer("attention_examples", 6, "Probe faces in the attention picture.")
flags.DEFINE_bool("make_plots", True, "Write the pictures.")


def main(argv) -> None:
    del argv
    if not FLAGS.data_dir or not FLAGS.model_dir:
        raise app.UsageError("--data_dir and --model_dir are required")
    from tf_rgbd import eval as eval_lib

    config = config_lib.from_flag_values(RecognizerEvalConfig, FLAGS)
    metrics = eval_lib.evaluate_recognizer(config)
    print(metrics["tables"]["identification"])
    print()
    print(metrics["tables"]["verification"])
    print(f"metrics and pictures: {metrics['output_dir']}")


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    app.run(main)
