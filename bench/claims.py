"""Every claim of the paper measured with seeds and 95 % intervals on the embedded synthetic data.

  python -m bench.claims                          # the full run (5 seeds, ~27 min on an idle
                                                  # 2-core machine)
  python -m bench.claims --quick --output_dir=/tmp/claims_quick   # smoke run (tiny sizes)
  python -m bench.claims --claims=tab6_mask_branch,tab8_add_sa     # only these claims

For every claim (Tab. 6 mask branch; DepthNet vs mean face and cGAN; Tab. 4/5 fused RGB-D vs
RGB with Dgt and with D* at test; Tab. 7 modality rows with the classification loss only;
Tab. 8 loss terms in the paper's order; the D* vs Dgt gap) it prints and writes the paper's
statement, the mean +- std of each side over the seeds, the paired difference with its 95 %
t-interval and the verdict (holds / does not hold / inconclusive), as
``bench/results/claims.json`` and ``bench/results/claims.md`` (and ``<output_dir>/claims.md``);
a run with a claim subset or changed sizes/settings writes ``claims_custom.*`` instead.
Every flag is a field of ``tf_rgbd.config.claims.ClaimsConfig``; a re-run reuses finished
seeds. The logic is ``tf_rgbd.experiments.claims``.
"""
from __future__ import annotations

import os

from absl import flags

from tf_rgbd import benchmarks, cli, io_utils
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.claims import QUICK, ClaimsConfig

FLAGS = flags.FLAGS
CONFIG_FLAGS = config_flags.define_config_flags(ClaimsConfig(), FLAGS)
flags.DEFINE_bool("quick", False, "Smoke run: tiny data and budgets (tf_rgbd.config.claims."
                  "QUICK), 2 seeds; checks the program end to end, decides nothing.")


def main(argv) -> int:
    del argv
    from tf_rgbd.experiments import claims  # noqa: PLC0415 (TensorFlow after flag parsing)

    config = CONFIG_FLAGS.config(preset=QUICK if FLAGS.quick else None)
    report = claims.run_claims(config)
    name = claims.results_name(config, FLAGS.quick)
    path = benchmarks.write_results(__file__, name, report)
    markdown_path = os.path.splitext(path)[0] + ".md"
    text = f"# Claims of the paper, measured ({name})\n\n{report['markdown']}\n"
    io_utils.atomic_write_text(markdown_path, text)
    io_utils.atomic_write_text(os.path.join(config.output_dir, f"{name}.md"), text)
    print(report["markdown"])
    print(f"\n{len(report['rows'])} claims, {report['seconds']['total']:.0f} s; wrote {path} "
          f"and {markdown_path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
