"""Runs a training command as N local workers of one multi-worker cluster (loopback ports).

  python -m training.launch_local --num_workers=2 -- \
      python -m training.train_recognizer --strategy=multi_worker --data_dir=DATA --model_dir=RUN

Each worker gets the ``TF_CONFIG`` that ``--strategy=multi_worker`` reads (worker 0 is the
chief); their output lines are prefixed ``[worker i]``. The exit status is 0 when every worker
succeeds, else the first non-zero status (the other workers are killed). Re-running the same
command after a failure resumes from the chief's newest checkpoint. See BUILD.md "Training on
several machines" for a real cluster. Logic: ``tf_rgbd.training.local_cluster``.
"""
from __future__ import annotations

from typing import Optional

from absl import flags

from tf_rgbd import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_workers", 2, "Worker processes to start (each one replica on CPU).")


def main(argv) -> Optional[int]:
    from tf_rgbd.training import local_cluster  # noqa: PLC0415
    command = list(argv[1:])
    if command[:1] == ["--"]:
        command = command[1:]
    return local_cluster.launch(command, FLAGS.num_workers)


if __name__ == "__main__":
    cli.run(main)
