"""Builds the generative domains of demodalizing face recognition (DMFR) from a dataset and a
trained DepthNet: ``<output_dir>/pose`` (RGB + D* re-rendered at new yaws, holes kept) and
``<output_dir>/quality`` (blurred, noisy, JPEG-compressed copies), each a schema-v1 dataset
with ``domain=generated`` whose example ids name their real counterpart
(``tf_rgbd.augmentation.dmfr_domains``).

  python -m training.build_dmfr_domains --generator=runs/depthnet/generator.keras \
      --data_dir=/tmp/s --output_dir=/tmp/s_dmfr

Every flag is a field of ``tf_rgbd.config.dmfr.DMFRDomainsConfig``. Shards are written
atomically; a re-run skips verified shards.
"""
from __future__ import annotations

import time
from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.dmfr import DMFRDomainsConfig

CONFIG_FLAGS = config_flags.define_config_flags(
    DMFRDomainsConfig(), required=("generator", "data_dir", "output_dir"))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.augmentation import dmfr_domains  # noqa: PLC0415 (imports TensorFlow)
    from tf_rgbd.models.loading import load_depth_generator  # noqa: PLC0415

    started = time.time()
    manifests = dmfr_domains.build_dmfr_domains(load_depth_generator(config.generator), config)
    for domain, manifest in manifests.items():
        counts = ", ".join(f"{name}: {split['example_count']}"
                           for name, split in manifest["splits"].items())
        print(f"{domain}: {config.output_dir}/{domain} ({counts})")
    print(f"built in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    cli.run(main)
