"""Measures the synthetic RGB-D face generator's throughput (whole render_sample, including
neutral_depth) and prints samples/s.

    python -m bench.synthetic_throughput --image_size=112 --num_samples=400 --num_workers=1

Reports wall-clock samples/s and, for one worker, samples per CPU-second of this process
(the per-core figure, which stays meaningful when other jobs share the CPU). The face model is
built before timing starts; per-identity work (shape, albedo) is included, amortised over
``--images_per_identity`` images as in a real dataset build.
"""
from __future__ import annotations

import time

from absl import flags

from tf_rgbd import benchmarks, cli
from tf_rgbd.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 112, "Side of the square crops in pixels.")
flags.DEFINE_integer("num_samples", 400, "Number of samples to render (after warm-up).")
flags.DEFINE_integer("num_workers", 1, "Worker processes (1 = render in this process).")
flags.DEFINE_integer("images_per_identity", 20, "Images per identity (per-identity work is "
                     "amortised over them).")
flags.DEFINE_integer("seed", 0, "Generator seed.")
flags.DEFINE_integer("warmup_samples", 10, "Samples rendered before timing starts.")


def measure(image_size: int, num_samples: int, num_workers: int, images_per_identity: int,
            seed: int, warmup_samples: int) -> dict:
    """Renders ``num_samples`` samples and returns timing figures (seconds and samples/s)."""
    num_identities = -(-(num_samples + warmup_samples) // images_per_identity)
    config = synthetic.SyntheticConfig(num_identities=num_identities,
                                       images_per_identity=images_per_identity,
                                       image_size=image_size, seed=seed)
    model = synthetic.build_face_model(config)
    stream = synthetic.generate(config, num_workers=num_workers, model=model)
    for _ in range(warmup_samples):
        next(stream)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    count = 0
    for _ in range(num_samples):
        next(stream)
        count += 1
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    stream.close()
    result = {"samples": count, "wall_s": wall, "samples_per_s": count / wall}
    if num_workers <= 1:
        result["cpu_s"] = cpu
        result["samples_per_cpu_s"] = count / max(cpu, 1e-9)
    return result


def main(argv):
    del argv
    result = measure(FLAGS.image_size, FLAGS.num_samples, FLAGS.num_workers,
                     FLAGS.images_per_identity, FLAGS.seed, FLAGS.warmup_samples)
    line = (f"synthetic throughput: {result['samples']} samples at {FLAGS.image_size}x"
            f"{FLAGS.image_size}, {FLAGS.num_workers} worker(s): {result['samples_per_s']:.1f} "
            f"samples/s wall ({result['wall_s']:.2f} s)")
    if "samples_per_cpu_s" in result:
        line += (f", {result['samples_per_cpu_s']:.1f} samples per CPU-second "
                 f"({result['cpu_s']:.2f} s CPU)")
    print(line)
    path = benchmarks.write_results(__file__, "synthetic_throughput", {
        "image_size": FLAGS.image_size, "num_workers": FLAGS.num_workers,
        "images_per_identity": FLAGS.images_per_identity, **result})
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
