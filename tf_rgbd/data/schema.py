"""TFRecord example schema v1: one ``tf.train.Example`` per face image.

This module is the data contract of the project. Writers (dataset builders, the synthetic
generator, the 2D->RGB-D augmenter) build a :class:`FaceExample` and call
:func:`encode_example`; readers call :func:`parse_example` (graph mode, used by
``tf_rgbd.data.pipeline``) or :func:`decode_example_numpy` (eager, for tools and tests).

Feature keys (all present in every record; missing modalities are flagged, not omitted):

==================  ========  ==============================================================
key                 type      meaning
==================  ========  ==============================================================
schema_version      int64     ``SCHEMA_VERSION`` (1)
example_id          bytes     unique id within the dataset (protocol files refer to it)
rgb                 bytes     PNG or JPEG, H x W x 3 uint8
height, width       int64     size of ``rgb`` (and of depth/mask when present)
depth               bytes     16-bit 1-channel PNG; ``value * depth_scale_mm`` = depth in
                              ``depth_units``; 0 = no data. Empty when ``has_depth`` = 0
depth_scale_mm      float     see ``depth``
depth_units         bytes     ``mm`` (metric, camera z) or ``normalized`` (DepthNet output:
                              (0, 1], nearer = larger; see ``pipeline.normalize_depth``)
has_depth           int64     0/1
mask                bytes     1-channel uint8 PNG of class indices 0..6 (``MASK_CLASSES``);
                              empty when ``has_mask`` = 0
has_mask            int64     0/1
label               int64     identity index within the dataset (0..num_classes-1)
subject             bytes     subject id as named by the source dataset
dataset             bytes     source dataset name
domain              bytes     ``real`` | ``generated`` | ``synthetic``
expression          bytes     e.g. ``neutral``, ``smile``
yaw_deg, pitch_deg, float     head pose in degrees (yaw > 0: face turned to the image's left)
roll_deg
occlusion           bytes     ``none`` or the occluder's name (``hand``, ``glasses``, ...)
session             int64     acquisition session (1-based); time-lapse protocols use it
landmarks5          float[10] x0,y0,...,x4,y4 in pixels of ``rgb``: left eye, right eye, nose
                              tip, left mouth corner, right mouth corner (image left/right,
                              the ArcFace template order); all -1 when unknown
identity_coeffs     float[]   synthetic only: the generator's identity coefficients
expression_coeffs   float[]   synthetic only: the generator's expression coefficients
neutral_depth       bytes     synthetic only: same identity + pose, neutral expression,
                              same encoding as ``depth``; empty when ``has_neutral_depth`` = 0
has_neutral_depth   int64     0/1
gt_depth            bytes     augmented (generated) data only: the source's ground-truth depth
                              kept beside the generated ``depth`` for D* vs Dgt studies, same
                              units and scale as ``depth``; empty when ``has_gt_depth`` = 0
has_gt_depth        int64     0/1
==================  ========  ==============================================================

``identity_coeffs`` and ``expression_coeffs`` are exactly the float32 values the generator
rendered with: the example's mesh and its identity's neutral mesh are recomputed from them bit
for bit (``tf_rgbd.data.synthetic.shape_targets``, the joint reconstruction targets), so the
records carry no vertex lists.
"""
from __future__ import annotations

import dataclasses
import math
import struct
from typing import Mapping, Optional

import cv2
import numpy as np

# TensorFlow is imported lazily (parse/decode only): writers and their worker processes encode
# examples without paying the TensorFlow import (seconds per spawned worker).

SCHEMA_VERSION = 1

MASK_CLASSES = ("background", "skin", "brows", "eyes", "glasses", "nose", "mouth")
NUM_MASK_CLASSES = len(MASK_CLASSES)
DOMAINS = ("real", "generated", "synthetic")
DEPTH_UNITS = ("mm", "normalized")
NUM_LANDMARKS = 5
# Left/right pairs of ``landmarks5`` swapped by a horizontal flip.
LANDMARK_FLIP_ORDER = (1, 0, 2, 4, 3)
# 0.1 mm per PNG unit covers 0..6.55 m, enough for every face sensor we read.
DEFAULT_DEPTH_SCALE_MM = 0.1
# Normalised depth (0, 1] is stored at 1/65535 per unit.
NORMALIZED_DEPTH_SCALE = 1.0 / 65535.0


class SchemaError(ValueError):
    """An example does not satisfy schema v1 (the message says which field and why)."""


@dataclasses.dataclass(frozen=True)
class FaceExample:
    """One face image with its optional depth and mask, as written to a TFRecord.

    Attributes:
      example_id: unique id within the dataset.
      rgb: uint8 [H, W, 3], RGB channel order (not OpenCV's BGR).
      label: identity index, >= 0.
      subject: the source dataset's subject id.
      dataset: source dataset name.
      domain: one of ``DOMAINS``.
      depth: float32 [H, W] in ``depth_units`` (mm: camera z in millimetres), 0 = no data,
        or None when the source has no depth.
      depth_units: ``mm`` or ``normalized``.
      mask: uint8 [H, W] class indices 0..6, or None.
      landmarks5: float32 [5, 2] pixel (x, y), or None when unknown.
      neutral_depth: float32 [H, W] like ``depth`` (synthetic data only), or None.
      gt_depth: float32 [H, W] like ``depth`` (augmented data that keeps the source's
        ground truth, in the same ``depth_units``), or None.
    """

    example_id: str
    rgb: np.ndarray
    label: int
    subject: str
    dataset: str
    domain: str = "real"
    depth: Optional[np.ndarray] = None
    depth_units: str = "mm"
    mask: Optional[np.ndarray] = None
    expression: str = "neutral"
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    occlusion: str = "none"
    session: int = 1
    landmarks5: Optional[np.ndarray] = None
    identity_coeffs: Optional[np.ndarray] = None
    expression_coeffs: Optional[np.ndarray] = None
    neutral_depth: Optional[np.ndarray] = None
    gt_depth: Optional[np.ndarray] = None
    rgb_format: str = "png"
    jpeg_quality: int = 95

    @property
    def attributes(self) -> dict:
        """The categorical/continuous attributes summarised in a manifest."""
        return {
            "domain": self.domain,
            "expression": self.expression,
            "occlusion": self.occlusion,
            "session": int(self.session),
            "yaw_deg": float(self.yaw_deg),
            "pitch_deg": float(self.pitch_deg),
            "roll_deg": float(self.roll_deg),
            "has_depth": self.depth is not None,
            "has_mask": self.mask is not None,
        }


# ---------------------------------------------------------------------------------------------
# tf.train.Example wire format, written directly (byte-compatible with TensorFlow's protos):
#   Example {Features features = 1}   Features {map<string, Feature> feature = 1}
#   Feature {oneof: BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3}
#   BytesList {repeated bytes value = 1}   FloatList {repeated float value = 1 [packed]}
#   Int64List {repeated int64 value = 1 [packed]}
# Keys are written sorted, so encoding is deterministic (byte-identical across processes).

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


def _bytes(value: bytes) -> bytes:
    """A serialised ``Feature`` holding one bytes value."""
    return _length_delimited(1, _length_delimited(1, value))


def _int(value: int) -> bytes:
    """A serialised ``Feature`` holding one int64 value."""
    return _length_delimited(3, _length_delimited(1, _varint(int(value))))


def _floats(values) -> bytes:
    """A serialised ``Feature`` holding a (possibly empty) float list."""
    values = [float(v) for v in values]
    packed = _length_delimited(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
    return _length_delimited(2, packed)


def _serialize_example(features: Mapping[str, bytes]) -> bytes:
    entries = b"".join(
        _length_delimited(1, _length_delimited(1, key.encode()) + _length_delimited(2, feature))
        for key, feature in sorted(features.items()))
    return _length_delimited(1, entries)


def _encode_png(image: np.ndarray, what: str) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise SchemaError(f"{what}: OpenCV could not encode a PNG of shape {image.shape}")
    return buffer.tobytes()


def _check_depth(depth: np.ndarray, height: int, width: int, what: str) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.shape != (height, width):
        raise SchemaError(
            f"{what}: shape {depth.shape} does not match the RGB image ({height}, {width}); "
            "resample depth onto the RGB grid before writing")
    depth = depth.astype(np.float64)
    if not np.all(np.isfinite(depth)):
        bad = int(np.size(depth) - np.count_nonzero(np.isfinite(depth)))
        raise SchemaError(f"{what}: {bad} non-finite (NaN/inf) values; mark missing depth with 0")
    if np.any(depth < 0):
        raise SchemaError(f"{what}: negative values (min {depth.min():.3f}); depth must be >= 0")
    return depth


def _depth_scale(depth: np.ndarray, units: str) -> float:
    if units == "normalized":
        if depth.max(initial=0.0) > 1.0 + 1e-6:
            raise SchemaError(f"normalized depth must lie in [0, 1], max is {depth.max():.4f}")
        return NORMALIZED_DEPTH_SCALE
    max_mm = float(depth.max(initial=0.0))
    # Use 0.1 mm steps unless the farthest point would overflow uint16.
    return max(DEFAULT_DEPTH_SCALE_MM, math.ceil(max_mm / 65535.0 * 1000.0) / 1000.0)


def encode_depth_png(depth: np.ndarray, scale: float) -> bytes:
    """Quantises depth (float, 0 = no data) to a uint16 PNG with ``value * scale = depth``.

    Valid (non-zero) depth never rounds to 0, so "no data" stays unambiguous.
    """
    quantised = np.round(depth / scale)
    quantised = np.where(depth > 0, np.maximum(quantised, 1), 0)
    return _encode_png(np.clip(quantised, 0, 65535).astype(np.uint16), "depth")


def encode_example(example: FaceExample) -> bytes:
    """Validates ``example`` and serialises it as a ``tf.train.Example`` (schema v1).

    Raises:
      SchemaError: wrong dtype/shape, size mismatch between modalities, NaN depth, labels out of
        range, unknown domain or units.
    """
    rgb = np.asarray(example.rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise SchemaError(
            f"{example.example_id}: rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    if example.domain not in DOMAINS:
        raise SchemaError(f"{example.example_id}: domain {example.domain!r} not in {DOMAINS}")
    if example.depth_units not in DEPTH_UNITS:
        raise SchemaError(
            f"{example.example_id}: depth_units {example.depth_units!r} not in {DEPTH_UNITS}")
    if int(example.label) < 0:
        raise SchemaError(f"{example.example_id}: label must be >= 0, got {example.label}")

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if example.rgb_format == "png":
        rgb_bytes = _encode_png(bgr, "rgb")
    elif example.rgb_format in ("jpeg", "jpg"):
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, example.jpeg_quality])
        if not ok:
            raise SchemaError(f"{example.example_id}: OpenCV could not encode a JPEG")
        rgb_bytes = buffer.tobytes()
    else:
        raise SchemaError(f"{example.example_id}: rgb_format must be png or jpeg")

    features = {
        "schema_version": _int(SCHEMA_VERSION),
        "example_id": _bytes(example.example_id.encode()),
        "rgb": _bytes(rgb_bytes),
        "height": _int(height),
        "width": _int(width),
        "label": _int(example.label),
        "subject": _bytes(str(example.subject).encode()),
        "dataset": _bytes(str(example.dataset).encode()),
        "domain": _bytes(example.domain.encode()),
        "expression": _bytes(str(example.expression).encode()),
        "yaw_deg": _floats([example.yaw_deg]),
        "pitch_deg": _floats([example.pitch_deg]),
        "roll_deg": _floats([example.roll_deg]),
        "occlusion": _bytes(str(example.occlusion).encode()),
        "session": _int(example.session),
        "depth_units": _bytes(example.depth_units.encode()),
    }

    depth_scale = DEFAULT_DEPTH_SCALE_MM
    companions = {"neutral_depth": example.neutral_depth, "gt_depth": example.gt_depth}
    if example.depth is not None:
        depth = _check_depth(example.depth, height, width, f"{example.example_id}: depth")
        checked = {key: _check_depth(value, height, width, f"{example.example_id}: {key}")
                   for key, value in companions.items() if value is not None}
        # One scale for every depth-like image of the example (they share ``depth_scale_mm``).
        depth_scale = _depth_scale(np.maximum.reduce([depth, *checked.values()]),
                                   example.depth_units)
        features["depth"] = _bytes(encode_depth_png(depth, depth_scale))
        features["has_depth"] = _int(1)
        for key in companions:
            encoded = encode_depth_png(checked[key], depth_scale) if key in checked else b""
            features[key] = _bytes(encoded)
            features["has_" + key] = _int(key in checked)
    else:
        given = [key for key, value in companions.items() if value is not None]
        if given:
            raise SchemaError(f"{example.example_id}: {given} given without depth")
        features["depth"] = _bytes(b"")
        features["has_depth"] = _int(0)
        for key in companions:
            features[key] = _bytes(b"")
            features["has_" + key] = _int(0)
    features["depth_scale_mm"] = _floats([depth_scale])

    if example.mask is not None:
        mask = np.asarray(example.mask)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.shape != (height, width):
            raise SchemaError(
                f"{example.example_id}: mask shape {mask.shape} != rgb ({height}, {width})")
        if mask.size and (mask.min() < 0 or mask.max() >= NUM_MASK_CLASSES):
            raise SchemaError(
                f"{example.example_id}: mask values must be class indices 0..{NUM_MASK_CLASSES - 1}")
        features["mask"] = _bytes(_encode_png(mask.astype(np.uint8), "mask"))
        features["has_mask"] = _int(1)
    else:
        features["mask"] = _bytes(b"")
        features["has_mask"] = _int(0)

    if example.landmarks5 is not None:
        landmarks = np.asarray(example.landmarks5, np.float64).reshape(-1)
        if landmarks.shape != (2 * NUM_LANDMARKS,) or not np.all(np.isfinite(landmarks)):
            raise SchemaError(f"{example.example_id}: landmarks5 must be 5 finite (x, y) points")
        features["landmarks5"] = _floats(landmarks)
    else:
        features["landmarks5"] = _floats([-1.0] * (2 * NUM_LANDMARKS))

    for key in ("identity_coeffs", "expression_coeffs"):
        values = getattr(example, key)
        values = [] if values is None else np.asarray(values, np.float64).reshape(-1)
        if len(values) and not np.all(np.isfinite(values)):
            raise SchemaError(f"{example.example_id}: {key} has non-finite values")
        features[key] = _floats(values)

    return _serialize_example(features)


def feature_spec() -> dict:
    """The ``tf.io.parse_single_example`` spec of schema v1 (defaults for every optional key)."""
    import tensorflow as tf

    return {
        "schema_version": tf.io.FixedLenFeature([], tf.int64),
        "example_id": tf.io.FixedLenFeature([], tf.string),
        "rgb": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "depth": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "depth_scale_mm": tf.io.FixedLenFeature([], tf.float32, default_value=DEFAULT_DEPTH_SCALE_MM),
        "depth_units": tf.io.FixedLenFeature([], tf.string, default_value=b"mm"),
        "has_depth": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "mask": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "has_mask": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "subject": tf.io.FixedLenFeature([], tf.string),
        "dataset": tf.io.FixedLenFeature([], tf.string),
        "domain": tf.io.FixedLenFeature([], tf.string),
        "expression": tf.io.FixedLenFeature([], tf.string, default_value=b"neutral"),
        "yaw_deg": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "pitch_deg": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "roll_deg": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "occlusion": tf.io.FixedLenFeature([], tf.string, default_value=b"none"),
        "session": tf.io.FixedLenFeature([], tf.int64, default_value=1),
        "landmarks5": tf.io.FixedLenFeature([2 * NUM_LANDMARKS], tf.float32,
                                            default_value=[-1.0] * (2 * NUM_LANDMARKS)),
        "identity_coeffs": tf.io.VarLenFeature(tf.float32),
        "expression_coeffs": tf.io.VarLenFeature(tf.float32),
        "neutral_depth": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "has_neutral_depth": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "gt_depth": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "has_gt_depth": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }


def parse_example(serialized):
    """Parses one serialised example (tf.string scalar) into raw, still encoded tensors.

    Graph-safe; variable-length coefficient lists come back dense (empty for non-synthetic data).
    """
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    for key in ("identity_coeffs", "expression_coeffs"):
        parsed[key] = tf.sparse.to_dense(parsed[key])
    return parsed


def _decode_png_numpy(data: bytes, flags: int, what: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise SchemaError(f"{what}: undecodable image bytes ({len(data)} bytes)")
    return image


def decode_example_numpy(serialized: bytes) -> FaceExample:
    """Decodes a serialised example back into a :class:`FaceExample` (eager, NumPy).

    Depth comes back as float32 in its units (quantised to ``depth_scale_mm``).
    """
    import tensorflow as tf

    proto = tf.train.Example.FromString(serialized)
    feature = proto.features.feature

    def text(key: str) -> str:
        return feature[key].bytes_list.value[0].decode()

    def integer(key: str) -> int:
        return int(feature[key].int64_list.value[0])

    def floats(key: str) -> np.ndarray:
        return np.asarray(feature[key].float_list.value, np.float32)

    version = integer("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"schema_version {version} is not supported (expected {SCHEMA_VERSION})")
    example_id = text("example_id")
    rgb = cv2.cvtColor(_decode_png_numpy(feature["rgb"].bytes_list.value[0], cv2.IMREAD_COLOR,
                                         f"{example_id}: rgb"), cv2.COLOR_BGR2RGB)
    scale = float(floats("depth_scale_mm")[0])

    def depth_of(key: str) -> Optional[np.ndarray]:
        data = feature[key].bytes_list.value[0] if key in feature else b""
        if not data:
            return None
        raw = _decode_png_numpy(data, cv2.IMREAD_UNCHANGED, f"{example_id}: {key}")
        return raw.astype(np.float32) * np.float32(scale)

    mask = None
    if integer("has_mask"):
        mask = _decode_png_numpy(feature["mask"].bytes_list.value[0], cv2.IMREAD_UNCHANGED,
                                 f"{example_id}: mask")
    landmarks = floats("landmarks5").reshape(NUM_LANDMARKS, 2)
    identity_coeffs = floats("identity_coeffs")
    expression_coeffs = floats("expression_coeffs")
    return FaceExample(
        example_id=example_id,
        rgb=rgb,
        label=integer("label"),
        subject=text("subject"),
        dataset=text("dataset"),
        domain=text("domain"),
        depth=depth_of("depth") if integer("has_depth") else None,
        depth_units=text("depth_units"),
        mask=mask,
        expression=text("expression"),
        yaw_deg=float(floats("yaw_deg")[0]),
        pitch_deg=float(floats("pitch_deg")[0]),
        roll_deg=float(floats("roll_deg")[0]),
        occlusion=text("occlusion"),
        session=integer("session"),
        landmarks5=None if np.all(landmarks == -1) else landmarks,
        identity_coeffs=identity_coeffs if identity_coeffs.size else None,
        expression_coeffs=expression_coeffs if expression_coeffs.size else None,
        neutral_depth=depth_of("neutral_depth") if integer("has_neutral_depth") else None,
        gt_depth=depth_of("gt_depth") if integer("has_gt_depth") else None,
    )
