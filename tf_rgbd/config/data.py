"""Configs of the data layer: dataset builds (``python -m datasets.build``)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from tf_rgbd.config import choice

# The registered dataset sources (tf_rgbd.data.sources.SOURCES has one module per name).
SOURCE_NAMES = ("synthetic", "bu3dfe", "bosphorus", "frgc", "texas3dfr", "biwi", "pandora",
                "lock3dface", "vggface2", "folder")
ON_ERROR = ("skip", "fail")
FACE_DETECTORS = ("auto", "short", "full")
MULTIPLE_FACES = ("largest", "skip", "all")
CROPS = ("arcface", "depthnet")
# Who runs the producers: a local process pool, or an Apache Beam pipeline (optional [beam]).
RUNNERS = ("local", "beam")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """One dataset build.

    Attributes:
      source: registered source name (``synthetic``, ``bu3dfe``, ``folder``...).
      output_dir: dataset directory (shards, manifest.json, protocols/).
      input_dir: the source's original folder (real datasets).
      image_size: output image side in pixels (square crops).
      num_shards: shards per split (capped at the number of tasks).
      num_workers: producer processes (local pool, or the Beam DirectRunner's processes).
      on_error: ``skip`` (count bad inputs and go on) or ``fail``.
      runner: ``local`` (a process pool) or ``beam`` (an Apache Beam pipeline: same shards,
        sidecars and manifest; needs the ``[beam]`` extra).
      beam_options: Beam pipeline options as one string (default: DirectRunner in
        multi-processing mode), e.g. ``--runner=DataflowRunner --project=P --region=R
        --temp_location=gs://B/tmp --setup_file=./setup.py``.
      seed: seed of every random choice (builds are deterministic).
      num_identities / images_per_identity: synthetic data size.
      test_fraction: fraction of identities held out as the test split (disjoint identities).
      preview: optional PNG path of a contact sheet of a few examples.
      morphable_model_dir: optional 3DDFA-layout morphable model for the synthetic source.
      heldout_subjects: real datasets: subjects (the last ones in sorted order) written to the
        ``test`` split, the rest to ``train``; -1 = the dataset's default (BU-3DFE 10, Texas all
        but 12, Bosphorus/FRGC/Lock3DFace all, Biwi/Pandora/folder none), 0 = none.
      poses: 3D scans: pose augmentation renders besides the frontal one, as comma-separated
        ``yaw:pitch`` pairs (degrees) or a grid ``Y0:Y1:STEP x P0:P1:STEP`` (inclusive).
      face_width_mm, face_height_mm: physical face size R_x, R_y of the Kinect dynamic crop
        (w = f_x R_x / D); ``face_width_mm`` is also the width of the scan renders.
      min_score: minimum MediaPipe face detection score.
      face_detector: ``auto`` (both BlazeFace models, short and full range, merged by
        non-maximum suppression), ``short`` or ``full``.
      multiple_faces: ``largest`` (keep the largest face, skip only ambiguous images),
        ``skip`` (skip any image with more than one face) or ``all`` (every face becomes its own
        example, id ``<image id>#face<k>``, k = 0 for the largest).
      ambiguous_face_ratio: with ``multiple_faces=largest``, an image whose second largest face
        has at least this fraction of the largest's box area is skipped as ``multiple_faces``
        (> 1 never skips).
      min_face_px: faces smaller than this (pixels) are skipped as ``tiny_face``.
      crop: 2D/RGB-D photo alignment: ``arcface`` (tight 5-point crop) or ``depthnet`` (looser).
      use_mediapipe: scans and Kinect frames: label masks/landmarks with MediaPipe (False:
        geometric labels only, faster).
      frame_stride: video sources (Biwi, Pandora, Lock3DFace): keep every n-th frame.
      kinect_focal_px: depth focal length in pixels for Kinect frames without calibration files
        (0 = nominal by width: 365 for 512-px Kinect v2, 575.8 for 640-px Kinect v1).
      expression_list: FRGC: optional text/CSV file of ``recording_id expression`` lines.
      texas_mm_per_pixel: Texas 3DFR range images: x/y spacing and z step (mm per unit).
      depth_8bit_scale_mm: depth images (folder, Pandora, Lock3DFace) must be 16-bit mm;
        8-bit depth is skipped as ``depth_not_16bit`` unless this states its scale in mm per
        8-bit unit (0 = reject).
    """

    source: str = choice("synthetic", SOURCE_NAMES)
    output_dir: str = ""
    input_dir: Optional[str] = None
    image_size: int = 112
    num_shards: int = 8
    num_workers: int = 1
    on_error: str = choice("skip", ON_ERROR)
    runner: str = choice("local", RUNNERS)
    beam_options: str = ""
    seed: int = 0
    num_identities: int = 40
    images_per_identity: int = 30
    test_fraction: float = 0.25
    preview: Optional[str] = None
    morphable_model_dir: Optional[str] = None
    heldout_subjects: int = -1
    poses: str = ""
    face_width_mm: float = 200.0
    face_height_mm: float = 200.0
    min_score: float = 0.5
    face_detector: str = choice("auto", FACE_DETECTORS)
    multiple_faces: str = choice("largest", MULTIPLE_FACES)
    ambiguous_face_ratio: float = 0.8
    min_face_px: int = 20
    crop: str = choice("arcface", CROPS)
    use_mediapipe: bool = True
    frame_stride: int = 1
    kinect_focal_px: float = 0.0
    expression_list: Optional[str] = None
    texas_mm_per_pixel: float = 0.32
    depth_8bit_scale_mm: float = 0.0

    def __post_init__(self):
        if self.source not in SOURCE_NAMES:
            raise ValueError(f"unknown source {self.source!r}; known sources: {SOURCE_NAMES}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be skip or fail, got {self.on_error!r}")
        if self.runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {self.runner!r}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not self.ambiguous_face_ratio > 0:
            raise ValueError(f"ambiguous_face_ratio must be > 0, got {self.ambiguous_face_ratio}")
        if self.depth_8bit_scale_mm < 0:
            raise ValueError(f"depth_8bit_scale_mm must be >= 0 (0 = reject 8-bit depth), got "
                             f"{self.depth_8bit_scale_mm}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """One 2D -> RGB-D augmentation (``python -m training.augment_dataset``).

    Attributes:
      generator: the trained depth generator (``generator.keras`` of train_depthnet).
      data_dir: the input dataset (RGB is enough).
      output_dir: the augmented dataset to write (RGB with background removed, D*, M*).
      splits: splits to convert (empty: every split of the input).
      batch_size: generator batch size.
      keep_gt_depth: store the source's ground-truth depth (normalised) as ``gt_depth``.
      depth_range_mm: normalisation span of the ground-truth depth (mm).
      dataset_name: the output's dataset name ('' = ``<input>_generated``).
      runner: ``local`` (this process) or ``beam`` (an Apache Beam pipeline over the input
        shards, the generator loaded once per Beam worker; needs the ``[beam]`` extra).
      beam_options: Beam pipeline options as one string (see ``BuildConfig.beam_options``).
      num_workers: Beam DirectRunner processes (0: one per CPU core).
    """

    generator: str = ""
    data_dir: str = ""
    output_dir: str = ""
    splits: tuple[str, ...] = ()
    batch_size: int = 32
    keep_gt_depth: bool = False
    depth_range_mm: float = 200.0
    dataset_name: str = ""
    runner: str = choice("local", RUNNERS)
    beam_options: str = ""
    num_workers: int = 0

    def __post_init__(self):
        if self.runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {self.runner!r}")


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """Verifying datasets' shards (``python -m datasets.verify DIR [DIR ...]``).

    Attributes:
      splits: splits to verify (empty: every split of the manifest).
      num_threads: shards verified in parallel.
      check_sha256: compare each shard's sha256 with its sidecar (else: records only).
    """

    splits: tuple[str, ...] = ()
    num_threads: int = 4
    check_sha256: bool = True
