"""Builds a TFRecord dataset (shards + manifest.json + protocols/) from a source.

  python -m datasets.build --source=synthetic --output_dir=/tmp/s --num_identities=8 \
      --images_per_identity=6 --image_size=64 --seed=1 --preview=/tmp/s/preview.png

Every flag is a field of ``tf_rgbd.config.data.BuildConfig`` (``--helpfull`` lists them).
Re-running into the same directory keeps complete, verified shards and rewrites the rest.
"""
from __future__ import annotations

from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.data import BuildConfig
from tf_rgbd.data import writer
from tf_rgbd.data.build import build_dataset

CONFIG_FLAGS = config_flags.define_config_flags(BuildConfig(), required=("output_dir",))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    manifest = build_dataset(config)
    print(writer.summarize_manifest(manifest))
    num_shards = sum(len(split["shards"]) for split in manifest["splits"].values())
    print(f"wrote {config.output_dir}/manifest.json ({num_shards} shards, "
          f"{manifest['example_count']} examples, {manifest['skipped_count']} skipped, "
          f"{manifest['extra']['build_seconds']:.1f} s); protocols: "
          f"{', '.join(manifest['extra']['protocols']) or 'none'}"
          + (f"; preview: {manifest['extra']['preview']}" if manifest["extra"]["preview"] else ""))
    return 0


if __name__ == "__main__":
    cli.run(main)
