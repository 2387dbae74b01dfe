"""Config of the face gallery program (``python -m export.identify``)."""
from __future__ import annotations

import dataclasses

from tf_rgbd.config import choice

GALLERY_COMMANDS = ("enroll", "identify", "verify", "list", "remove", "calibrate")
SCORE_METHODS = ("fused", "rgb", "depth")
ENROL_FACES = ("largest", "skip")


@dataclasses.dataclass(frozen=True)
class IdentifyConfig:
    """One gallery command: ``python -m export.identify --model=DIR --gallery=FILE COMMAND ...``.

    Attributes:
      model: an export directory (``python -m export.export`` output with the ``pipeline``
        graph) or a recognizer run directory (graphs built in memory, Keras).
      gallery: the gallery's SQLite file (created by the first enrolment).
      backend: which exported format runs the model: ``auto`` (onnx, else tflite_fp32, else
        savedmodel, else keras) or a format name of the export (``onnx_int8``, ``tflite_int8``,
        ...). A gallery only accepts the artefact it was enrolled with.
      subject: enroll / verify / remove: the subject's name.
      top_k: identify: subjects listed per face.
      method: the score: ``fused`` (RGB and depth cosines averaged), ``rgb`` or ``depth``.
      depth: enroll / identify / verify: comma-separated depth images (16-bit PNG, mm)
        registered to the photographs, one per photograph in order (empty: DepthNet generates
        the depth).
      enrol_faces: enroll / verify: which face of a photograph is the subject's: ``largest``
        (refusing photographs where two faces are nearly as large) or ``skip`` (refusing any
        photograph with more than one face).
      threshold: verify: accept above this score instead of the gallery's calibrated threshold
        (nan = use the stored one).
      data_dir: calibrate: the dataset holding the protocol (its RGB crops are embedded).
      protocol: calibrate: the protocol's name (``<data_dir>/protocols/<name>.json``).
      far_target: calibrate: the false accept rate the threshold is chosen for.
      batch_size: faces (calibrate: examples) per model call.
      num_threads: ONNX Runtime / LiteRT intra-op threads (0 = the runtime's default).
    """

    model: str = ""
    gallery: str = ""
    backend: str = "auto"
    subject: str = ""
    top_k: int = 5
    method: str = choice("fused", SCORE_METHODS)
    depth: tuple[str, ...] = ()
    enrol_faces: str = choice("largest", ENROL_FACES)
    threshold: float = float("nan")
    data_dir: str = ""
    protocol: str = "lock3dface_style"
    far_target: float = 1e-3
    batch_size: int = 32
    num_threads: int = 0

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0.0 < self.far_target < 1.0:
            raise ValueError(f"far_target must be in (0, 1), got {self.far_target}")
        if self.method not in SCORE_METHODS:
            raise ValueError(f"method must be one of {SCORE_METHODS}, got {self.method!r}")
