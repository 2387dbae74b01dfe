"""The generative domains of demodalizing face recognition (DMFR; Zhai et al., AAAI 2021):
each a schema-v1 dataset with ``domain="generated"`` (the library side of
``python -m training.build_dmfr_domains``).

* ``pose``: every source image re-rendered at new head poses from its RGB and its generated
  depth D* (a trained DepthNet): D* (normalised) is lifted to millimetres with the crop camera,
  the point cloud is rotated about a point inside the head and rasterised with the project's
  z-buffer (:func:`tf_rgbd.data.pose_augment.augment_pose`, mesh mode), so the renders keep the
  holes (self-occlusion, depth jumps, the cut background) and the stretched texture of the
  2D -> 3D -> new-pose route. Yaw offset 0 re-renders the source at its own pose: the
  generated sample whose real counterpart has the same conditions (the filter mode's pairs).
* ``quality``: degraded copies of the source image: Gaussian blur, additive Gaussian noise and
  JPEG compression, strengths drawn per example (seeded by the example id).

Every generated example records its real counterpart in its id (no schema change):
``<source id>#dmfr-<domain>-<condition>`` (:func:`generated_example_id`,
:func:`parse_generated_id`); the condition is ``yaw+35`` / ``yaw-35`` / ``yaw+0`` or ``lq``.
Label, subject, session, expression and occlusion are the source's; ``yaw_deg`` is the
source's plus the offset. Shards are written with the project's atomic sharded writer (one
output shard per input shard); a re-run skips verified shards.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from tf_rgbd.augmentation.generated_rgbd import generated_examples
from tf_rgbd.config.dmfr import POSE_DOMAIN, QUALITY_DOMAIN, DMFRDomainsConfig
from tf_rgbd.data import pipeline, pose_augment, schema, writer
from tf_rgbd.data.geometry import CameraIntrinsics

ID_MARKER = "#dmfr-"
SAME_CONDITIONS = {POSE_DOMAIN: "yaw+0", QUALITY_DOMAIN: "lq"}
# Scale of ``blur_sigma_px``: sigmas are given for a 112-pixel face.
REFERENCE_FACE_PX = 112


def pose_condition(yaw_offset_deg: float) -> str:
    """``yaw+35``, ``yaw-35``, ``yaw+0`` (rounded to whole degrees)."""
    return f"yaw{int(round(yaw_offset_deg)):+d}"


def generated_example_id(source_id: str, domain: str, condition: str) -> str:
    """The id of a generated example: its real counterpart's id, domain and condition."""
    return f"{source_id}{ID_MARKER}{domain}-{condition}"


def parse_generated_id(example_id: str) -> tuple[str, str, str]:
    """``(source id, domain, condition)`` of a generated example id; raises ValueError on an
    id that :func:`generated_example_id` did not make."""
    source_id, marker, rest = example_id.rpartition(ID_MARKER)
    domain, _, condition = rest.partition("-")
    if not marker or not source_id or not condition:
        raise ValueError(f"{example_id!r} is not a DMFR generated example id "
                         f"(<source>{ID_MARKER}<domain>-<condition>)")
    return source_id, domain, condition


def is_same_conditions(example_id: str) -> bool:
    """True when a generated example differs from its real counterpart only in modality
    (the same source image and pose: Delta c = 0)."""
    _, domain, condition = parse_generated_id(example_id)
    return SAME_CONDITIONS.get(domain) == condition


# --- degradations (the low-quality domain) ---------------------------------------------------

def gaussian_blur(rgb: np.ndarray, sigma_px: float) -> np.ndarray:
    """uint8 [H, W, 3] blurred with a Gaussian of ``sigma_px`` pixels."""
    if sigma_px <= 0:
        return np.asarray(rgb, np.uint8).copy()
    return cv2.GaussianBlur(np.asarray(rgb, np.uint8), (0, 0), sigmaX=float(sigma_px))


def gaussian_noise(rgb: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3] plus N(0, std^2) noise (0-255 scale), clipped and rounded."""
    noisy = np.asarray(rgb, np.float32) + rng.normal(0.0, std, np.shape(rgb))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg_compress(rgb: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [H, W, 3] after a JPEG encode/decode round trip at ``quality`` (1-100)."""
    bgr = cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {np.shape(rgb)}")
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def example_rng(example_id: str, seed: int) -> np.random.Generator:
    """A generator seeded by ``seed`` and the example id (stable across processes)."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def degrade(rgb: np.ndarray, rng: np.random.Generator, config: DMFRDomainsConfig
            ) -> tuple[np.ndarray, dict]:
    """Blur, then noise, then JPEG, strengths drawn from ``config``'s ranges.

    Returns ``(uint8 [H, W, 3], {"blur_sigma_px", "noise_std", "jpeg_quality"})``.
    """
    size = min(np.shape(rgb)[:2])
    sigma = rng.uniform(*config.blur_sigma_px) * size / REFERENCE_FACE_PX
    std = rng.uniform(*config.noise_std)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    image = jpeg_compress(gaussian_noise(gaussian_blur(rgb, sigma), std, rng), quality)
    return image, {"blur_sigma_px": float(sigma), "noise_std": float(std),
                   "jpeg_quality": quality}


def quality_example(source: schema.FaceExample, config: DMFRDomainsConfig
                    ) -> schema.FaceExample:
    """The degraded copy of a real example (same pose, same everything but quality)."""
    image, _ = degrade(source.rgb, example_rng(source.example_id, config.seed), config)
    return dataclasses.replace(
        source, example_id=generated_example_id(source.example_id, QUALITY_DOMAIN,
                                                SAME_CONDITIONS[QUALITY_DOMAIN]),
        rgb=image, domain="generated", rgb_format="png")


# --- novel poses from RGB + D* ---------------------------------------------------------------

def normalized_to_mm(depth: np.ndarray, face_distance_mm: float, depth_range_mm: float
                     ) -> np.ndarray:
    """Normalised depth (0, 1], nearer = larger, 0 = background) -> camera z in mm (0 kept):
    the inverse of ``pipeline.normalize_depth`` with the nearest point at ``face_distance_mm``."""
    depth = np.asarray(depth, np.float32)
    return np.where(depth > 0, face_distance_mm + (1.0 - depth) * depth_range_mm,
                    0.0).astype(np.float32)


def mm_to_normalized(depth_mm: np.ndarray, face_distance_mm: float, depth_range_mm: float
                     ) -> np.ndarray:
    """The inverse of :func:`normalized_to_mm`, clipped to [1/65535, 1] on valid pixels."""
    depth_mm = np.asarray(depth_mm, np.float32)
    relative = 1.0 - (depth_mm - face_distance_mm) / depth_range_mm
    return np.where(depth_mm > 0, np.clip(relative, 1.0 / 65535.0, 1.0), 0.0).astype(np.float32)


def pose_examples(generated: schema.FaceExample, source_id: str,
                  config: DMFRDomainsConfig) -> list[schema.FaceExample]:
    """The pose domain's renders of one generated RGB-D example (RGB with D*, M*).

    Args:
      generated: the augmenter's output for the source (``rgb`` uint8 [S, S, 3] with the
        background removed, ``depth`` = D* normalised [S, S], ``mask`` = M* or None).
      source_id: the real counterpart's example id.
      config: offsets and the camera.
    """
    size = generated.rgb.shape[0]
    intrinsics = CameraIntrinsics.for_face_crop(size, config.face_distance_mm,
                                                config.face_width_mm)
    depth_mm = normalized_to_mm(generated.depth, config.face_distance_mm, config.depth_range_mm)
    examples = []
    for offset in config.yaw_offsets_deg:
        render = pose_augment.augment_pose(depth_mm, intrinsics, yaw_deg=float(offset),
                                           pitch_deg=0.0, rgb=generated.rgb,
                                           mask=generated.mask, method="mesh")
        examples.append(dataclasses.replace(
            generated,
            example_id=generated_example_id(source_id, POSE_DOMAIN, pose_condition(offset)),
            rgb=render["rgb"], mask=render["mask"],
            depth=mm_to_normalized(render["depth"], config.face_distance_mm,
                                   config.depth_range_mm),
            depth_units="normalized", domain="generated", landmarks5=None, gt_depth=None,
            yaw_deg=float(generated.yaw_deg + offset)))
    return examples


class PoseDomainProducer:
    """The writer's ``produce`` of the pose domain: input shard path -> its renders.

    Records are decoded with ``schema.decode_example_numpy`` and resized like the input
    pipeline (``pipeline.resize_rgb``); the generator gives D* and M* in batches
    (``generated_rgbd.generated_examples``), then every example is re-rendered per yaw offset.
    """

    def __init__(self, generator, config: DMFRDomainsConfig):
        self.generator = generator
        self.image_size = int(generator.get_config().get("image_size")
                              or generator.input_shape[1])
        self.config = config
        self._forward = tf.function(lambda rgb: generator(rgb, training=False),
                                    reduce_retracing=True)

    def __call__(self, shard_path: str) -> Iterator[schema.FaceExample]:
        sources = [schema.decode_example_numpy(record)
                   for record in tf.data.TFRecordDataset(shard_path).as_numpy_iterator()]
        for start in range(0, len(sources), self.config.batch_size):
            chunk = sources[start:start + self.config.batch_size]
            rgb = tf.stack([pipeline.resize_rgb(
                tf.image.convert_image_dtype(source.rgb, tf.float32), self.image_size)
                for source in chunk])
            for source, generated in zip(chunk, generated_examples(
                    self.generator, chunk, {"rgb": rgb.numpy()}, keep_gt_depth=False,
                    forward=self._forward)):
                yield from pose_examples(generated, source.example_id, self.config)


class QualityDomainProducer:
    """The writer's ``produce`` of the quality domain: input shard path -> degraded copies."""

    def __init__(self, config: DMFRDomainsConfig):
        self.config = config

    def __call__(self, shard_path: str) -> Iterator[schema.FaceExample]:
        for record in tf.data.TFRecordDataset(shard_path).as_numpy_iterator():
            yield quality_example(schema.decode_example_numpy(record), self.config)


def build_dmfr_domains(generator, config: DMFRDomainsConfig,
                       splits: Optional[Sequence[str]] = None, progress: bool = True
                       ) -> dict[str, dict]:
    """Writes ``<output_dir>/pose`` and ``<output_dir>/quality`` from ``config.data_dir``.

    Args:
      generator: the loaded depth generator (D*).
      config: the domains' settings.
      splits: overrides ``config.splits`` (empty/None = every split of the source).

    Returns:
      ``{domain: manifest}``.
    """
    manifest = pipeline.read_manifest(config.data_dir)
    splits = list(splits or config.splits or manifest["splits"])
    unknown = sorted(set(splits) - set(manifest["splits"]))
    if unknown:
        raise KeyError(f"{config.data_dir}: no split(s) {unknown}; it has "
                       f"{sorted(manifest['splits'])} (--splits)")
    tasks = {split: [os.path.join(config.data_dir, shard["name"])
                     for shard in manifest["splits"][split]["shards"]] for split in splits}
    producers = {POSE_DOMAIN: PoseDomainProducer(generator, config),
                 QUALITY_DOMAIN: QualityDomainProducer(config)}
    manifests = {}
    for domain, produce in producers.items():
        output_dir = os.path.join(config.output_dir, domain)
        results = {split: writer.write_split(output_dir, split, shards, produce,
                                             num_shards=len(shards), num_workers=1,
                                             on_error="fail", task_name=os.path.basename,
                                             progress=progress)
                   for split, shards in tasks.items()}
        manifests[domain] = writer.write_manifest(
            output_dir, f"{manifest['dataset']}_dmfr_{domain}", manifest["class_names"],
            results, extra={"source_dir": os.path.abspath(config.data_dir),
                            "source_dataset": manifest["dataset"], "dmfr_domain": domain,
                            "generator": config.generator,
                            "domains_config": dataclasses.asdict(config)})
    return manifests
