"""Two finished claims runs compared value by value, paired over their common seeds.

  python -m bench.claims --output_dir=/tmp/claims_none --sam_normalization=none
  python -m bench.claims --output_dir=/tmp/claims_batch --sam_normalization=batch
  python -m bench.claims_compare --a_dir=/tmp/claims_none --b_dir=/tmp/claims_batch \\
      --a_label=sam_normalization=none --b_label=sam_normalization=batch \\
      --name=claims_sam_none_vs_batch

Prints and writes ``bench/results/<name>.{json,md}``: for every rank-1 and depth value both
runs measured, each run's mean +- std, B - A (oriented: > 0 = B better) with its paired 95 %
t-interval, and the config fields in which the runs differ. The logic is
``tf_rgbd.experiments.claims.compare_runs``.
"""
from __future__ import annotations

import os

from absl import flags

from tf_rgbd import benchmarks, cli, io_utils
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.claims import ClaimsComparisonConfig

FLAGS = flags.FLAGS
CONFIG_FLAGS = config_flags.define_config_flags(ClaimsComparisonConfig(), FLAGS,
                                                required=("a_dir", "b_dir"))


def main(argv) -> int:
    del argv
    from tf_rgbd.experiments import claims  # noqa: PLC0415

    config = CONFIG_FLAGS.config()
    report = claims.compare_runs(config.a_dir, config.b_dir, config.a_label, config.b_label)
    path = benchmarks.write_results(__file__, config.name, report)
    markdown_path = os.path.splitext(path)[0] + ".md"
    io_utils.atomic_write_text(markdown_path, f"# {config.b_label} vs {config.a_label}\n\n"
                               f"{report['markdown']}\n")
    print(report["markdown"])
    print(f"\nwrote {path} and {markdown_path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
