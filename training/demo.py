"""`make demo`: the whole system end to end on the embedded synthetic RGB-D dataset.

  python -m training.demo --output_dir=runs/demo            # make demo (~30 min, 2-core CPU)
  python -m training.demo --quick --output_dir=runs/demo_quick   # make demo QUICK=1 (minutes)

Builds the data, trains DepthNet and the cGAN baseline, tabulates depth, augments the 2D split
to RGB-D, trains the recognizer and the RGB baseline, evaluates them (D* and Dgt), exports the
edge ``pipeline`` graph behind its parity gates, times the artefacts, identifies the test
probes through a SQLite gallery on the deployed artefact, and writes
``<output_dir>/report.html`` (self-contained), ``report.md`` and ``metrics.json``. A re-run
continues where an interrupted one stopped. Every flag is a field of
``tf_rgbd.config.demo.DemoConfig``; ``--quick`` applies ``tf_rgbd.config.demo.QUICK`` to the
fields not given on the command line. The logic is ``tf_rgbd.experiments.demo``. Exits 1 when
the gallery's rank-1 differs from the Keras evaluation's by more than the int8 gate (the
report says so).
"""
from __future__ import annotations

import dataclasses
import sys

from absl import flags

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.demo import QUICK, DemoConfig

FLAGS = flags.FLAGS
CONFIG_FLAGS = config_flags.define_config_flags(DemoConfig(), FLAGS)
flags.DEFINE_bool("quick", False, "make demo QUICK=1: the same stages at the sizes of "
                  "tf_rgbd.config.demo.QUICK (flags given on the command line still win); "
                  "checks the system end to end in minutes, its numbers mean little.")


def main(argv) -> int:
    del argv
    config = CONFIG_FLAGS.config()
    if FLAGS.quick:
        config = dataclasses.replace(config, **{
            name: value for name, value in QUICK.items() if FLAGS[name].using_default_value})
    from tf_rgbd.experiments import demo  # noqa: PLC0415 (TensorFlow after flag parsing)

    summary = demo.run_demo(config)
    if not summary["passed"]:
        check = summary["stages"]["gallery"]["result"]["check"]
        print(f"error: the gallery's rank-1 through the deployed artefact "
              f"({check['gallery_rank1']:.2f}%) differs from the Keras evaluation's "
              f"({check['keras_rank1']:.2f}%) by more than {check['gate_points']:g} point; see "
              "the report", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
