"""Verifies every shard of one or more datasets against its sidecar (sha256, record count).

  python -m datasets.verify /data/tfr/vggface2 [/data/tfr/bosphorus ...] [--splits=train]

Prints one line per dataset and one per bad shard (what is wrong, the record and byte offset
where reading stops) and exits 1 when any shard is bad (0 when all verify). Rebuild a bad
shard by deleting it and re-running the build, or train without it with
``--on_corrupt_shard=skip``. Flags: ``tf_rgbd.config.data.VerifyConfig``.
"""
from __future__ import annotations

from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.data import VerifyConfig

CONFIG_FLAGS = config_flags.define_config_flags(VerifyConfig())


def main(argv) -> Optional[int]:
    directories = list(argv[1:])
    if not directories:
        raise cli.UserError("give at least one dataset directory: python -m datasets.verify DIR")
    config = CONFIG_FLAGS.config()
    from tf_rgbd.data import verify  # noqa: PLC0415 (imports TensorFlow)

    all_ok = True
    for directory in directories:
        report = verify.verify_dataset(directory, config.splits or None, config.num_threads,
                                       config.check_sha256)
        print(report.summary())
        all_ok &= report.ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    cli.run(main)
