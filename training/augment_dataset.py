"""2D -> RGB-D augmentation: runs a trained depth generator over a TFRecord dataset and writes a
new dataset with the generated depth D* and mask M* (``tf_rgbd.augmentation.generated_rgbd``).

  python -m training.augment_dataset --generator=/tmp/depthnet/generator.keras \
      --data_dir=/tmp/casia_2d --output_dir=/tmp/casia_rgbd [--keep_gt_depth]
  python -m training.augment_dataset ... --runner=beam [--beam_options="--runner=DataflowRunner ..."]

Every flag is a field of ``tf_rgbd.config.data.AugmentConfig``. Shards are written atomically
and a re-run skips verified shards.
"""
from __future__ import annotations

import time
from typing import Optional

from tf_rgbd import cli
from tf_rgbd.config import flags as config_flags
from tf_rgbd.config.data import AugmentConfig

CONFIG_FLAGS = config_flags.define_config_flags(
    AugmentConfig(), required=("generator", "data_dir", "output_dir"))


def main(argv) -> Optional[int]:
    del argv
    config = CONFIG_FLAGS.config()
    from tf_rgbd.augmentation import generated_rgbd  # noqa: PLC0415 (imports TensorFlow)
    from tf_rgbd.models.loading import load_depth_generator  # noqa: PLC0415

    started = time.time()
    generator = load_depth_generator(config.generator)
    manifest, stats = generated_rgbd.augment_dataset(
        generator, config.data_dir, config.output_dir, config.splits, config.batch_size,
        config.keep_gt_depth, config.depth_range_mm, config.dataset_name, config.generator,
        runner=config.runner, beam_options=config.beam_options, num_workers=config.num_workers)
    counts = ", ".join(f"{name}: {split['example_count']}"
                       for name, split in manifest["splits"].items())
    print(f"wrote {config.output_dir} ({counts}; {manifest['skipped_count']} skipped) in "
          f"{time.time() - started:.1f} s; generator {stats.images_per_second:.1f} images/s over "
          f"{stats.examples} newly generated images")
    return 0


if __name__ == "__main__":
    cli.run(main)
