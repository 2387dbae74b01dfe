"""The related methods' paper-style tables on the embedded synthetic data, over seeds.

  python -m bench.related_methods                                  # 3 seeds, every method
  python -m bench.related_methods --methods=dmfr --seeds=0,1,2,3,4  # one method, more seeds
  python -m bench.related_methods --quick --output_dir=/tmp/related_quick   # smoke run

Prints and writes (``bench/results/related_methods.json`` and ``.md``, and
``<output_dir>/related_methods.md``): shape RMSE per yaw bin and recognition with c_Id for the
joint reconstruction ablations (Liu et al. 2018); TAR@FAR per DMFR mode against the real-only
and the 1:1 mixed CosFace baselines on the general / cross-pose / cross-quality probe sets, and
the intra/inter-class similarity table (Zhai et al. 2021); the Siamese depth verifier on
ground-truth vs generated depth (Pini et al.). Every number is mean and std over the seeds. The
logic is ``tf_rgbd.experiments.related_methods``; every flag is a field of
``tf_rgbd.config.related.RelatedMethodsConfig``.
"""
from __future__ import annotations

import os

from absl import flags

from tf_rgbd import benchmarks, cli, io_utils
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.related import QUICK, RelatedMethodsConfig

FLAGS = flags.FLAGS
CONFIG_FLAGS = config_flags.define_config_flags(RelatedMethodsConfig(), FLAGS)


def main(argv) -> int:
    del argv
    from tf_rgbd.experiments import related_methods  # noqa: PLC0415 (TF after flag parsing)

    config = CONFIG_FLAGS.config(preset=QUICK if FLAGS.quick else None)
    report = related_methods.run_related_methods(config)
    name = "related_methods_quick" if config.quick else "related_methods"
    path = benchmarks.write_results(__file__, name, report)
    text = f"# Related methods, measured ({name})\n\n{report['markdown']}\n"
    markdown_path = os.path.splitext(path)[0] + ".md"
    io_utils.atomic_write_text(markdown_path, text)
    io_utils.atomic_write_text(os.path.join(config.output_dir, f"{name}.md"), text)
    print(report["markdown"])
    print(f"\n{len(report['methods'])} method(s), {report['seconds']['total']:.0f} s; wrote "
          f"{path} and {markdown_path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
