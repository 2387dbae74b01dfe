"""Input-pipeline headroom: tf.data examples/s against what the recognizer's train step consumes.

  python -m bench.input_pipeline --data_dir=/tmp/s              # 112x112, batch 32
  python -m bench.input_pipeline --quick                         # tiny synthetic set, few steps

The pipeline is the recognizer's training input exactly as ``training.train_recognizer`` builds
it (``pipeline.make_dataset``: RGB + depth + mask, augmentation, shuffling, repeat). The
consumption is our full recognizer's train step (two branches + mask, all four losses) under
``--mixed_precision`` on fixed in-memory batches, in the same process right after. Headroom =
pipeline examples/s / step images/s; the goal is >= 20 (the input never limits training, even
when the step gets 20x faster, e.g. on an accelerator). With ``--quick`` (or without
``--data_dir``) a small synthetic dataset is built in a temporary folder first. Results go to
``bench/results/input_pipeline.json``.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

from absl import flags

from tf_rgbd import benchmarks, cli

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Tiny sizes and few batches (the test suite's run).")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: build a synthetic one).")
flags.DEFINE_string("split", "train", "Split to read.")
flags.DEFINE_integer("image_size", 112, "Image size.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("num_batches", 40, "Pipeline batches timed after one warm-up batch.")
flags.DEFINE_string("backbone", "ir_se50", "Recognizer backbone of the consuming step.")
flags.DEFINE_string("mixed_precision", "mixed_bfloat16", "Dtype policy of the step.")
flags.DEFINE_integer("steps", 3, "Train steps timed after one warm-up step.")

QUICK = dict(image_size=32, batch_size=4, num_batches=5, backbone="tiny", steps=2)
GOAL = 20.0


def setting(name: str):
    return QUICK[name] if FLAGS.quick and name in QUICK else getattr(FLAGS, name)


def build_synthetic(folder: str, image_size: int) -> str:
    from tf_rgbd.config.data import BuildConfig
    from tf_rgbd.data.build import build_dataset
    build_dataset(BuildConfig(source="synthetic", output_dir=folder, image_size=image_size,
                              num_identities=4 if FLAGS.quick else 8,
                              images_per_identity=3 if FLAGS.quick else 8, num_shards=2,
                              use_mediapipe=False), progress=False)
    return folder


def pipeline_examples_per_s(data_dir: str) -> float:
    from tf_rgbd.data import pipeline
    dataset = pipeline.make_dataset(data_dir, FLAGS.split, batch_size=setting("batch_size"),
                                    image_size=setting("image_size"),
                                    modalities=("rgb", "depth", "mask"), augment=True,
                                    shuffle=True, repeat=True, seed=0, deterministic=True,
                                    drop_remainder=True)
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(setting("num_batches")):
        next(iterator)
    return setting("num_batches") * setting("batch_size") / (time.perf_counter() - started)


def step_images_per_s(num_classes: int) -> float:
    import keras
    import tensorflow as tf

    from tf_rgbd.config.recognizer import (RecognizerLossConfig, RecognizerModelConfig,
                                           SGDConfig)
    from tf_rgbd.training import rgbd_trainer
    size, batch_size = setting("image_size"), setting("batch_size")
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    try:
        trainer, _ = rgbd_trainer.build_trainer(
            RecognizerModelConfig(backbone=setting("backbone"), image_size=size),
            RecognizerLossConfig(), SGDConfig(learning_rate=0.01), num_classes, 100,
            loss_scaling=FLAGS.mixed_precision == "mixed_float16")
        generator = tf.random.Generator.from_seed(0)
        batch = {"rgb": generator.uniform([batch_size, size, size, 3], -1.0, 1.0),
                 "depth": generator.uniform([batch_size, size, size, 1]),
                 "mask": tf.one_hot(generator.uniform([batch_size, size, size], 0, 7, tf.int32),
                                    7),
                 "label": tf.range(batch_size) % num_classes}
        iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
        trainer.make_train_function()

        def step():
            logs = trainer.train_function(iterator)
            logs = logs.get_value() if hasattr(logs, "get_value") else logs
            return float(logs["loss"])

        step()
        times = []
        for _ in range(setting("steps")):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return batch_size / statistics.median(times)


def main(argv) -> None:
    del argv
    with tempfile.TemporaryDirectory(prefix="input_pipeline_") as temporary:
        data_dir = FLAGS.data_dir
        if data_dir is None or FLAGS.quick:
            print("building a synthetic dataset ...", flush=True)
            data_dir = build_synthetic(os.path.join(temporary, "synthetic"),
                                       setting("image_size"))
        pipeline_rate = pipeline_examples_per_s(data_dir)
        print(f"pipeline: {pipeline_rate:.1f} examples/s", flush=True)
        step_rate = step_images_per_s(num_classes=100)
    headroom = pipeline_rate / step_rate
    verdict = "ok" if headroom >= GOAL else f"BELOW the {GOAL:.0f}x goal"
    print(f"\n{'tf.data examples/s':>20s} {'train step img/s':>17s} {'headroom':>9s}\n"
          f"{pipeline_rate:20.1f} {step_rate:17.2f} {headroom:8.1f}x  ({verdict}; "
          f"{setting('image_size')}x{setting('image_size')}, batch {setting('batch_size')}, "
          f"{setting('backbone')} two-branch + mask step under {FLAGS.mixed_precision}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    path = benchmarks.write_results(__file__, "input_pipeline", {
        "quick": FLAGS.quick, "data_dir": FLAGS.data_dir, "image_size": setting("image_size"),
        "batch_size": setting("batch_size"), "backbone": setting("backbone"),
        "mixed_precision": FLAGS.mixed_precision, "pipeline_examples_per_s": round(pipeline_rate, 1),
        "step_images_per_s": round(step_rate, 2), "headroom": round(headroom, 1),
        "goal": GOAL})
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
