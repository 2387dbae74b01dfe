"""Measures tf.data decoding throughput (examples/s) of a dataset directory.

  python -m bench.pipeline_throughput --data_dir=runs/demo/synthetic --image_size=112

Prints examples/s for RGB only and for RGB + depth + mask, with and without augmentation, and
writes them to ``bench/results/pipeline_throughput.json``.
"""
from __future__ import annotations

import time

from absl import flags

from tf_rgbd import benchmarks, cli
from tf_rgbd.data import pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Dataset directory.")
flags.DEFINE_string("split", "train", "Split to read.")
flags.DEFINE_integer("image_size", 112, "Output image size.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("num_batches", 60, "Batches timed after one warm-up batch.")
flags.mark_flag_as_required("data_dir")


def examples_per_second(modalities, augment: bool) -> float:
    dataset = pipeline.make_dataset(FLAGS.data_dir, FLAGS.split, batch_size=FLAGS.batch_size,
                                    image_size=FLAGS.image_size, modalities=modalities,
                                    augment=augment, shuffle=True, repeat=True, seed=0,
                                    zero_fill=modalities)
    iterator = iter(dataset)
    next(iterator)  # warm-up: graph tracing, file opening
    started = time.perf_counter()
    for _ in range(FLAGS.num_batches):
        next(iterator)
    return FLAGS.num_batches * FLAGS.batch_size / (time.perf_counter() - started)


def main(argv) -> None:
    del argv
    print(f"tf.data throughput on {FLAGS.data_dir} ({FLAGS.split}), {FLAGS.image_size}x"
          f"{FLAGS.image_size}, batch {FLAGS.batch_size}, {FLAGS.num_batches} batches:")
    rows = []
    for modalities in (("rgb",), ("rgb", "depth", "mask")):
        for augment in (False, True):
            rate = examples_per_second(modalities, augment)
            rows.append({"modalities": list(modalities), "augment": augment,
                         "examples_per_s": round(rate, 1)})
            print(f"  {'+'.join(modalities):15s} augment={str(augment):5s} {rate:8.0f} examples/s")
    path = benchmarks.write_results(__file__, "pipeline_throughput", {
        "data_dir": FLAGS.data_dir, "split": FLAGS.split, "image_size": FLAGS.image_size,
        "batch_size": FLAGS.batch_size, "num_batches": FLAGS.num_batches, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
