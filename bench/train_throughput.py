"""Training-step throughput: our trainers vs the PyTorch references, in one process run.

  python -m bench.train_throughput                      # 112x112, batch 32, IR-SE-50 (minutes)
  python -m bench.train_throughput --quick              # tiny sizes, a few steps (the suite's)

Three comparisons, each timed on fixed in-memory batches (no input pipeline) with every variant
built and warmed up first and then timed INTERLEAVED (round 1: each variant ``--steps`` steps,
round 2: again, ...) so that a machine whose load changes treats all variants alike:

* ``recognizer_rgb``: our recognizer with only the RGB branch and the classification loss
  (``modalities=rgb``, ``losses=cls``) vs an InsightFace ``arcface_torch`` IR-SE-50 + ArcFace
  step (``tf_rgbd.experiments.torch_reference``), 112x112, batch 32.
* ``recognizer_full``: our full two-branch + mask model with all four losses (ours only).
* ``depthnet``: our DepthNet GAN step (generator + 3 PatchGAN discriminators) vs the same-size
  pix2pix-style UNet LSGAN step in PyTorch.

Our variants: ``fp32`` (graph), ``fp32_xla`` (``jit_compile``), ``bf16`` (``mixed_bfloat16``,
graph) and ``bf16_xla``; PyTorch's: ``fp32`` (NCHW), ``fp32_cl`` (channels_last) and
``bf16_cl`` (bf16 autocast + channels_last, its best CPU setting). Printed per row: img/s (median
step time), the ratio to the best PyTorch row, and model FLOPs/s as a fraction of this machine's
measured fp32 matmul peak. Results go to ``bench/results/train_throughput.json``.

Needs the ``[bench]`` extra (CPU PyTorch) for the reference rows; ``--reference=false`` times
ours only.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

from absl import flags

from tf_rgbd import benchmarks, cli

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Tiny sizes and few steps (the test suite's run).")
flags.DEFINE_list("parts", ["recognizer_rgb", "recognizer_full", "depthnet"],
                  "Comparisons to run.")
flags.DEFINE_list("variants", ["fp32", "fp32_xla", "bf16", "bf16_xla"], "Our variants.")
flags.DEFINE_list("full_variants", ["fp32", "bf16"],
                  "Our variants for recognizer_full (the slowest model).")
flags.DEFINE_bool("reference", True, "Time the PyTorch references (needs torch).")
flags.DEFINE_integer("batch_size", 32, "Recognizer batch size.")
flags.DEFINE_integer("image_size", 112, "Recognizer image size.")
flags.DEFINE_string("backbone", "ir_se50", "Recognizer backbone.")
flags.DEFINE_integer("num_classes", 1000, "Identities of the classifier.")
flags.DEFINE_integer("depth_batch_size", 16, "DepthNet batch size.")
flags.DEFINE_integer("depth_image_size", 64, "DepthNet image size.")
flags.DEFINE_integer("depth_base_filters", 32, "DepthNet base filters.")
flags.DEFINE_integer("steps", 2, "Timed steps per variant per round.")
flags.DEFINE_integer("rounds", 2, "Interleaved rounds.")
flags.DEFINE_integer("warmup_steps", 1, "Untimed steps after building (tracing, compiling).")
flags.DEFINE_integer("threads", 0, "Intra-op threads of BOTH frameworks (0 = all CPUs). On a "
                     "machine shared with other jobs 1 is fairer: PyTorch's OpenMP barriers "
                     "collapse when its threads are descheduled (measured 3.7x slower wall time "
                     "with 2 threads than with 1 at load average 7 on 2 CPUs).")

QUICK = dict(batch_size=4, image_size=32, backbone="tiny", num_classes=8, depth_batch_size=4,
             depth_image_size=32, depth_base_filters=8, steps=2, rounds=1)
OURS = {"fp32": ("float32", False), "fp32_xla": ("float32", True),
        "bf16": ("mixed_bfloat16", False), "bf16_xla": ("mixed_bfloat16", True)}
TORCH = {"fp32": (False, False), "fp32_cl": (True, False), "bf16_cl": (True, True)}
TINY_UNITS, TINY_WIDTHS = (1, 1, 1, 1), (8, 16, 32, 64)


def setting(name: str):
    if FLAGS.quick and name in QUICK:
        return QUICK[name]
    return getattr(FLAGS, name)


def matmul_peak_gflops() -> dict:
    """Best fp32 (and bf16) GFLOP/s of a 2048^2 matmul over TF and PyTorch on this machine."""
    import tensorflow as tf
    size = 512 if FLAGS.quick else 2048
    repeats = 3 if FLAGS.quick else 10
    peaks = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.random.uniform([size, size], dtype=tf.float32)
        a = tf.cast(a, dtype)
        matmul = tf.function(lambda x: tf.matmul(x, x))
        matmul(a).numpy()
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            matmul(a).numpy()
            best = min(best, time.perf_counter() - started)
        peaks[f"tf_{dtype.name}"] = 2 * size ** 3 / best / 1e9
    if FLAGS.reference:
        import torch
        for dtype in (torch.float32, torch.bfloat16):
            a = torch.rand(size, size).to(dtype)
            torch.mm(a, a)
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                torch.mm(a, a)
                best = min(best, time.perf_counter() - started)
            peaks[f"torch_{str(dtype).split('.')[-1]}"] = 2 * size ** 3 / best / 1e9
    peaks["fp32"] = max(value for key, value in peaks.items() if key.endswith("float32"))
    return {key: round(value, 1) for key, value in peaks.items()}


def recognizer_batch(batch_size: int, image_size: int, num_classes: int) -> dict:
    import tensorflow as tf
    generator = tf.random.Generator.from_seed(0)
    return {"rgb": generator.uniform([batch_size, image_size, image_size, 3], -1.0, 1.0),
            "depth": generator.uniform([batch_size, image_size, image_size, 1]),
            "mask": tf.one_hot(generator.uniform([batch_size, image_size, image_size], 0, 7,
                                                 tf.int32), 7),
            "label": tf.range(batch_size) % num_classes}


def keras_step(trainer, batch) -> Callable[[], float]:
    """One call = one compiled Keras train step on ``batch`` (returns the loss)."""
    import tensorflow as tf
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    trainer.make_train_function()

    def step() -> float:
        logs = trainer.train_function(iterator)
        if hasattr(logs, "get_value"):  # a tf.experimental.Optional (steps_per_execution 1)
            logs = logs.get_value()
        return float(logs["loss"] if "loss" in logs else logs["g_loss"])

    return step


def with_policy(policy: str, build: Callable[[], Callable[[], float]]) -> Callable[[], float]:
    """Builds (and warms up, i.e. traces) a step under a Keras dtype policy."""
    import keras
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        step = build()
        for _ in range(setting("warmup_steps") if not FLAGS.quick else 1):
            step()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return step


def our_recognizer(variant: str, full: bool) -> tuple[Callable[[], float], Callable]:
    from tf_rgbd.config.recognizer import (RecognizerLossConfig, RecognizerModelConfig,
                                           SGDConfig)
    from tf_rgbd.training import rgbd_trainer
    policy, jit = OURS[variant]
    model = RecognizerModelConfig(backbone=setting("backbone"), image_size=setting("image_size"),
                                  modalities=("rgb", "depth", "mask") if full else ("rgb",))
    losses = RecognizerLossConfig() if full else RecognizerLossConfig(losses=("cls",))
    batch = recognizer_batch(setting("batch_size"), setting("image_size"),
                             setting("num_classes"))
    holder = {}

    def build():
        trainer, _ = rgbd_trainer.build_trainer(
            model, losses, SGDConfig(learning_rate=0.01), setting("num_classes"), 100,
            jit_compile=jit, loss_scaling=policy == "mixed_float16")
        holder["trainer"] = trainer
        return keras_step(trainer, batch)

    step = with_policy(policy, build)
    return step, lambda: tf_train_flops(holder["trainer"], batch)


def our_depthnet(variant: str) -> tuple[Callable[[], float], Callable]:
    import tensorflow as tf
    from tf_rgbd.config.depthnet import DepthModelConfig, OptimizerConfig
    from tf_rgbd.training import depth_training
    policy, jit = OURS[variant]
    size, batch_size = setting("depth_image_size"), setting("depth_batch_size")
    generator = tf.random.Generator.from_seed(1)
    batch = {"rgb": generator.uniform([batch_size, size, size, 3], -1.0, 1.0),
             "depth": generator.uniform([batch_size, size, size, 1]),
             "mask": tf.one_hot(generator.uniform([batch_size, size, size], 0, 7, tf.int32), 7)}
    holder = {}

    def build():
        model = DepthModelConfig(image_size=size, base_filters=setting("depth_base_filters"),
                                 discriminator_filters=setting("depth_base_filters"))
        trainer = depth_training.build_depth_trainer(model)
        loss_scaling = policy == "mixed_float16"
        trainer.compile(depth_training.make_optimizer(OptimizerConfig(), loss_scaling, "g"),
                        depth_training.make_optimizer(OptimizerConfig(), loss_scaling, "d"),
                        jit_compile=jit)
        trainer.build_for_training(size)
        holder["trainer"] = trainer
        return keras_step(trainer, batch)

    step = with_policy(policy, build)
    return step, lambda: tf_train_flops(holder["trainer"], batch)


def tf_train_flops(trainer, batch) -> int:
    """FLOPs of one train step's graph (forward, gradients, update) by TF's op statistics."""
    import tensorflow as tf
    function = tf.function(lambda data: trainer.train_step(data))
    graph = function.get_concrete_function(batch).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def torch_recognizer(variant: str) -> tuple[Callable[[], float], Callable]:
    import torch
    from tf_rgbd.experiments import torch_reference
    channels_last, bf16 = TORCH[variant]
    units, widths = ((TINY_UNITS, TINY_WIDTHS) if setting("backbone") == "tiny"
                     else ((3, 4, 14, 3), (64, 128, 256, 512)))
    kwargs = dict(batch_size=setting("batch_size"), image_size=setting("image_size"),
                  num_classes=setting("num_classes"), units=units, widths=widths)
    step = torch_reference.recognizer_step(channels_last=channels_last, bf16_autocast=bf16,
                                           **kwargs)
    step()

    def flops():
        model = torch_reference.IResNetSE(units, widths, setting("image_size"))
        images = torch.rand(setting("batch_size"), 3, setting("image_size"),
                            setting("image_size"))
        return torch_reference.train_step_flops(model, [images])

    return step, flops


def torch_depthnet(variant: str) -> tuple[Callable[[], float], Callable]:
    from tf_rgbd.experiments import torch_reference
    from tf_rgbd.models.blocks import unet_levels
    channels_last, bf16 = TORCH[variant]
    size = setting("depth_image_size")
    step = torch_reference.depth_gan_step(
        setting("depth_batch_size"), size, unet_levels(size), setting("depth_base_filters"),
        256, setting("depth_base_filters"), 3, channels_last=channels_last, bf16_autocast=bf16)
    step()
    return step, lambda: None


def time_interleaved(steps: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Seconds per step of every variant, timed round-robin."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu_times: dict[str, list[float]] = {name: [] for name in steps}
    losses: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(setting("rounds")):
        for name, step in steps.items():
            for _ in range(setting("steps")):
                started, cpu_started = time.perf_counter(), time.process_time()
                losses[name].append(step())
                times[name].append(time.perf_counter() - started)
                cpu_times[name].append(time.process_time() - cpu_started)
            print(f"    round {round_index + 1}: {name:18s} "
                  f"{statistics.median(times[name][-setting('steps'):]):7.3f} s/step", flush=True)
    return times, cpu_times, losses


def run_part(part: str, peak_gflops: float) -> list[dict]:
    full = part == "recognizer_full"
    batch = setting("depth_batch_size") if part == "depthnet" else setting("batch_size")
    candidates = {}
    variants = FLAGS.full_variants if full else FLAGS.variants
    for variant in variants:
        print(f"  building ours/{variant} ...", flush=True)
        started = time.perf_counter()
        candidates[f"ours/{variant}"] = (our_depthnet(variant) if part == "depthnet"
                                         else our_recognizer(variant, full))
        print(f"    built + warmed up in {time.perf_counter() - started:.1f} s", flush=True)
    if FLAGS.reference and not full:
        import torch
        torch.set_num_threads(FLAGS.threads or os.cpu_count() or 1)
        for variant in TORCH:
            print(f"  building torch/{variant} ...", flush=True)
            candidates[f"torch/{variant}"] = (torch_depthnet(variant) if part == "depthnet"
                                              else torch_recognizer(variant))
    times, cpu_times, losses = time_interleaved({name: step for name, (step, _) in candidates.items()})
    flops = {}
    for name, (_, count) in candidates.items():
        if name.startswith("ours/") and "ours" not in flops:
            flops["ours"] = count()
        if name.startswith("torch/") and "torch" not in flops:
            flops["torch"] = count()
    rows = []
    for name in candidates:
        seconds = statistics.median(times[name])
        owner = name.split("/")[0]
        step_flops = flops.get(owner) or flops.get("ours")
        cpu_seconds = statistics.median(cpu_times[name])
        rows.append({"part": part, "variant": name, "seconds_per_step": round(seconds, 4),
                     "images_per_s": round(batch / seconds, 2),
                     "cpu_seconds_per_step": round(cpu_seconds, 4),
                     "images_per_cpu_s": round(batch / cpu_seconds, 3),
                     "train_gflops_per_step": round(step_flops / 1e9, 2),
                     "fraction_of_fp32_peak": round(step_flops / seconds / 1e9 / peak_gflops, 3),
                     "losses": [round(value, 4) for value in losses[name]]})
    best_torch = max((row["images_per_s"] for row in rows
                      if row["variant"].startswith("torch/")), default=None)
    best_torch_cpu = max((row["images_per_cpu_s"] for row in rows
                          if row["variant"].startswith("torch/")), default=None)
    for row in rows:
        row["ratio_to_best_torch"] = (round(row["images_per_s"] / best_torch, 3)
                                      if best_torch else None)
        row["cpu_ratio_to_best_torch"] = (round(row["images_per_cpu_s"] / best_torch_cpu, 3)
                                          if best_torch_cpu else None)
    return rows


def main(argv) -> None:
    del argv
    if FLAGS.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    if FLAGS.reference:
        try:
            import torch  # noqa: F401
        except ImportError as error:
            raise SystemExit(f"PyTorch is not installed ({error}); pip install -e '.[bench]' "
                             "or run with --reference=false") from None
    load = os.getloadavg()
    print(f"train-step throughput, load average {load[0]:.1f} on {os.cpu_count()} CPUs "
          f"({'quick' if FLAGS.quick else 'full'} sizes)")
    peaks = matmul_peak_gflops()
    print(f"  matmul peak GFLOP/s: {peaks}")
    rows = []
    for part in FLAGS.parts:
        print(f"{part}:", flush=True)
        rows += run_part(part, peaks["fp32"])
    print(f"\n{'part':16s} {'variant':16s} {'s/step':>8s} {'img/s':>8s} {'vs best torch':>14s} "
          f"{'img/CPU-s':>10s} {'vs torch':>9s} {'GFLOP/step':>11s} {'of fp32 peak':>13s}")
    for row in rows:
        ratio = "" if row["ratio_to_best_torch"] is None else f"{row['ratio_to_best_torch']:.2f}x"
        cpu_ratio = ("" if row["cpu_ratio_to_best_torch"] is None
                     else f"{row['cpu_ratio_to_best_torch']:.2f}x")
        print(f"{row['part']:16s} {row['variant']:16s} {row['seconds_per_step']:8.3f} "
              f"{row['images_per_s']:8.2f} {ratio:>14s} {row['images_per_cpu_s']:10.3f} "
              f"{cpu_ratio:>9s} {row['train_gflops_per_step']:11.1f} "
              f"{row['fraction_of_fp32_peak']:13.3f}")
    default_parts = ["recognizer_rgb", "recognizer_full", "depthnet"]
    name = ("train_throughput" if FLAGS.parts == default_parts or FLAGS.quick
            else "train_throughput_" + "_".join(FLAGS.parts))
    path = benchmarks.write_results(__file__, name, {
        "quick": FLAGS.quick, "threads": FLAGS.threads, "load_average_at_start": list(load), "matmul_peak_gflops": peaks,
        "settings": {name: setting(name) for name in (
            "batch_size", "image_size", "backbone", "num_classes", "depth_batch_size",
            "depth_image_size", "depth_base_filters", "steps", "rounds")},
        "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
