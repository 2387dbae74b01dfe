"""Inference graphs: training-free functional Keras models with named inputs and outputs.

Every graph has a dynamic batch, fixed channels and spatial sizes, no margin/style heads, no
discriminator, no dropout (``training=False`` everywhere). Images are float32 in [-1, 1],
depth in [0, 1] (0 = background, nearer = larger, ``tf_rgbd.data.pipeline.normalize_depth``),
masks 7-channel over ``schema.MASK_CLASSES``. G = the depth generator's size, R = the
recognizer's size, S = a graph's input size (``input_size``, default G).

================  ====================================================  =====================
graph             inputs                                                outputs
================  ====================================================  =====================
``depthnet``      ``rgb`` [B,G,G,3]                                     ``depth`` [B,G,G,1] (raw
                                                                        generator output),
                                                                        ``mask`` [B,G,G,7]
``recognizer``    the run's modalities: ``rgb`` [B,R,R,3], ``depth``    ``id_rgb``, ``id_depth``
                  [B,R,R,1], ``mask`` [B,R,R,7]                         [B,D] (unit L2),
                                                                        ``score_embedding``
``pipeline``      ``rgb`` [B,S,S,3]                                     as ``recognizer``
``pipeline_sensor`` ``rgb`` [B,S,S,3], ``depth`` [B,S,S,1] (a measured  as ``recognizer``
                  depth map normalised by ``pipeline.normalize_depth``)
================  ====================================================  =====================

``score_embedding`` is ``concat(id_rgb, id_depth) / sqrt(number of branches)``: the dot product
of two score embeddings is the mean of the per-branch cosines, i.e. the ``fused`` score of
``tf_rgbd.eval.embeddings.similarity_scores`` (with one branch it is that branch's cosine).
With ``flip_test`` (the evaluation default) each ``id_<branch>`` is the L2-normalised sum of
the embeddings of the face and of its mirror image, exactly as ``extract_embeddings`` computes.

``pipeline`` applies, between DepthNet and the recognizer, exactly what the training data went
through (``tf_rgbd.augmentation.generated_rgbd`` then ``tf_rgbd.data.pipeline.make_dataset``):

1. rgb resized S -> G (bilinear with antialiasing, ``tf.image.resize(antialias=True)``);
2. DepthNet; D* = clip(depth, 0, 1); M* = argmax of the mask probabilities; face = M* != 0
   (without a mask branch: D* >= ``MIN_VALID_PREDICTION``); D* := 0 off the face; rgb := -1
   (black) off the face;
3. resized G -> R as ``make_dataset`` reads the stored example: rgb bilinear with antialiasing,
   depth area-resampled over face pixels only (``masked_resize``), mask nearest;
4. the recognizer (and the flip test).

The only difference from the stored training data is that the augmented dataset holds the rgb
as 8-bit and D* as 16-bit PNGs (quantisation steps 1/255 and 1/65535); the graph keeps floats.
``pipeline_sensor`` uses the measured depth instead of D* (area-resampled S -> G -> R over valid
pixels, as ``augment_dataset --keep_gt_depth`` then ``make_dataset`` do with ``gt_depth``).

Resizes are written as fixed matrices applied along height and width (``ResizeImages``): the
matrices are computed once from ``tf.image.resize`` itself, so the result is the same numbers,
and every exporter (tf2onnx, TFLite, TensorRT) gets plain MatMuls instead of the
``ScaleAndTranslate`` op that antialiased resizing lowers to.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_rgbd.data import schema
from tf_rgbd.metrics.depth import MIN_VALID_PREDICTION
from tf_rgbd.models import blocks
from tf_rgbd.models import recognizer as recognizer_lib

GRAPHS = ("depthnet", "recognizer", "pipeline", "pipeline_sensor")
EMBEDDING_GRAPHS = ("recognizer", "pipeline", "pipeline_sensor")
SCORE_EMBEDDING = "score_embedding"
RESIZE_METHODS = ("bilinear_antialias", "area", "nearest")
NUM_MASK_CLASSES = schema.NUM_MASK_CLASSES


def resize_matrix(in_size: int, out_size: int, method: str) -> np.ndarray:
    """float32 [out_size, in_size]: the 1-D operator ``tf.image.resize`` applies along an axis.

    The resizes used here are separable, so ``M_h @ image @ M_w^T`` equals the 2-D resize; the
    matrix is read off ``tf.image.resize`` applied to the identity (one column per input
    pixel), so it is that function's own arithmetic.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method {method!r} is not one of {RESIZE_METHODS}")
    basis = tf.eye(in_size, dtype=tf.float32)[:, :, None, None]  # in_size images [in, 1, 1]
    kwargs = {"bilinear_antialias": dict(method="bilinear", antialias=True),
              "area": dict(method="area"), "nearest": dict(method="nearest")}[method]
    columns = tf.image.resize(basis, [out_size, 1], **kwargs)[:, :, 0, 0]  # [in, out]
    return np.ascontiguousarray(columns.numpy().T.astype(np.float32))


@keras.saving.register_keras_serializable(package="tf_rgbd")
class ResizeImages(keras.layers.Layer):
    """[B, in, in, C] -> [B, out, out, C] with fixed per-axis matrices (see ``resize_matrix``).

    ``masked=True`` is ``make_dataset``'s depth resize: area over valid (> 0) pixels only, the
    output pixel kept where more than half its footprint is valid, else 0.
    """

    def __init__(self, in_size: int, out_size: int, method: str = "bilinear_antialias",
                 masked: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.method = method
        self.masked = bool(masked)
        self._matrix = resize_matrix(self.in_size, self.out_size, method)

    def _apply(self, images):
        # Plain 2-D MatMuls over reshaped planes (TFLite FULLY_CONNECTED, ONNX MatMul); a
        # broadcasting batched matmul crashes TF 2.19's eager CPU kernel here.
        matrix_t = tf.constant(self._matrix.T)  # [in, out]
        size_in, size_out = self.in_size, self.out_size
        channels = images.shape[-1]
        planes = tf.transpose(images, [0, 3, 1, 2])                     # [B, C, H, W]
        planes = tf.matmul(tf.reshape(planes, [-1, size_in]), matrix_t)  # W -> out
        planes = tf.reshape(planes, [-1, channels, size_in, size_out])   # [B, C, H, P]
        planes = tf.transpose(planes, [0, 1, 3, 2])                      # [B, C, P, H]
        planes = tf.matmul(tf.reshape(planes, [-1, size_in]), matrix_t)  # H -> out
        planes = tf.reshape(planes, [-1, channels, size_out, size_out])  # [B, C, P, O]
        return tf.transpose(planes, [0, 3, 2, 1])                        # [B, O, P, C]

    def call(self, images):
        if self.in_size == self.out_size:
            return images
        if not self.masked:
            return self._apply(images)
        valid = tf.cast(images > 0, images.dtype)
        summed = self._apply(images * valid)
        weight = self._apply(valid)
        return tf.where(weight > 0.5, summed / tf.maximum(weight, 1e-6), tf.zeros_like(summed))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.out_size, self.out_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "in_size": self.in_size, "out_size": self.out_size,
                "method": self.method, "masked": self.masked}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class GeneratedRGBD(keras.layers.Layer):
    """DepthNet outputs -> the recognizer inputs the augmented dataset gives (steps 2-3 above).

    Inputs: ``rgb`` [B,G,G,3] in [-1, 1] (what the generator saw), ``depth`` [B,G,G,1] (raw
    generator output), ``mask`` [B,G,G,7] probabilities (absent without a mask branch).
    Outputs: dict ``rgb`` [B,R,R,3], ``depth`` [B,R,R,1] (D*), ``mask`` [B,R,R,7] one-hot M*
    (zeros without a mask branch, as ``make_dataset`` gives for ``has_mask=0``).
    """

    def __init__(self, generator_size: int, output_size: int, has_mask: bool = True,
                 min_valid_prediction: float = MIN_VALID_PREDICTION, **kwargs):
        super().__init__(**kwargs)
        self.generator_size = int(generator_size)
        self.output_size = int(output_size)
        self.has_mask = bool(has_mask)
        self.min_valid_prediction = float(min_valid_prediction)
        self.resize_rgb = ResizeImages(self.generator_size, self.output_size,
                                       "bilinear_antialias", name="resize_rgb")
        self.resize_depth = ResizeImages(self.generator_size, self.output_size, "area",
                                         masked=True, name="resize_depth")
        self.resize_mask = ResizeImages(self.generator_size, self.output_size, "nearest",
                                        name="resize_mask")

    def build(self, input_shape):
        # The resizes hold constants only; nothing to create.
        self.built = True

    def call(self, inputs):
        rgb = inputs["rgb"]
        depth = tf.clip_by_value(inputs["depth"], 0.0, 1.0)
        if self.has_mask:
            classes = tf.argmax(inputs["mask"], axis=-1, output_type=tf.int32)
            face = tf.not_equal(classes, 0)[..., None]
            mask = tf.one_hot(classes, NUM_MASK_CLASSES, dtype=rgb.dtype)
        else:
            face = depth >= self.min_valid_prediction
            mask = None
        depth = tf.where(face, depth, tf.zeros_like(depth))
        rgb = tf.where(face, rgb, -tf.ones_like(rgb))
        outputs = {"rgb": self.resize_rgb(rgb), "depth": self.resize_depth(depth)}
        if mask is not None:
            outputs["mask"] = self.resize_mask(mask)
        else:
            outputs["mask"] = tf.zeros(tf.concat([tf.shape(outputs["rgb"])[:3],
                                                  [NUM_MASK_CLASSES]], 0), rgb.dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        batch = input_shape["rgb"][0]
        size = self.output_size
        return {"rgb": (batch, size, size, 3), "depth": (batch, size, size, 1),
                "mask": (batch, size, size, NUM_MASK_CLASSES)}

    def get_config(self):
        return {**super().get_config(), "generator_size": self.generator_size,
                "output_size": self.output_size, "has_mask": self.has_mask,
                "min_valid_prediction": self.min_valid_prediction}


@keras.saving.register_keras_serializable(package="tf_rgbd")
class FlipWidth(keras.layers.Layer):
    """Mirror image: [B, H, W, C] reversed along W."""

    def call(self, images):
        return tf.reverse(images, axis=[2])


@keras.saving.register_keras_serializable(package="tf_rgbd")
class ScoreEmbedding(keras.layers.Layer):
    """Unit embeddings of the branches -> their concatenation / sqrt(branches) (see module)."""

    def call(self, embeddings):
        embeddings = list(embeddings)
        return tf.concat(embeddings, axis=-1) * (1.0 / math.sqrt(len(embeddings)))


def generator_size(generator: keras.Model) -> int:
    """G: the depth generator's square input size."""
    return int(generator.get_config().get("image_size") or generator.input_shape[1])


def generator_has_mask(generator: keras.Model) -> bool:
    return bool(generator.get_config().get("use_mask_branch", True))


def depthnet_graph(generator: keras.Model) -> keras.Model:
    """``rgb`` [B,G,G,3] -> ``depth`` [B,G,G,1], ``mask`` [B,G,G,7] (without a mask branch: depth
    only)."""
    size = generator_size(generator)
    rgb = keras.Input((size, size, 3), name="rgb")
    outputs = generator(rgb, training=False)
    named = {"depth": keras.layers.Identity(name="depth")(outputs["depth"])}
    if "mask" in outputs:
        named["mask"] = keras.layers.Identity(name="mask")(outputs["mask"])
    return keras.Model({"rgb": rgb}, named, name="depthnet")


def _embedding_outputs(encoder: keras.Model, inputs: dict, branches: Sequence[str],
                       flip_test: bool) -> dict:
    encoded = encoder(inputs)
    if flip_test:
        flip = FlipWidth(name="flip")
        flipped = encoder({name: flip(value) for name, value in inputs.items()})
        encoded = {key: keras.layers.Add(name=f"flip_sum_{key}")([encoded[key], flipped[key]])
                   for key in encoded}
    outputs = {f"id_{branch}": blocks.UnitNormalization(name=f"id_{branch}")(
        encoded[f"id_{branch}"]) for branch in branches}
    outputs[SCORE_EMBEDDING] = ScoreEmbedding(name=SCORE_EMBEDDING)(
        [outputs[f"id_{branch}"] for branch in branches])
    return outputs


def recognizer_graph(recognizer: recognizer_lib.SegmentationGuidedRecognizer, image_size: int,
                     flip_test: bool = True) -> keras.Model:
    """The run's modalities at R -> ``id_<branch>`` and ``score_embedding`` (see module)."""
    encoder = recognizer_lib.build_inference_model(recognizer, image_size)
    inputs = {name: keras.Input((image_size, image_size, recognizer_lib.INPUT_CHANNELS[name]),
                                name=name) for name in recognizer.modalities}
    outputs = _embedding_outputs(encoder, inputs, recognizer.branches, flip_test)
    return keras.Model(inputs, outputs, name="recognizer")


def pipeline_graph(generator: keras.Model,
                   recognizer: recognizer_lib.SegmentationGuidedRecognizer,
                   recognizer_size: int, input_size: Optional[int] = None,
                   flip_test: bool = True, sensor_depth: bool = False) -> keras.Model:
    """``rgb`` [B,S,S,3] (and with ``sensor_depth`` ``depth`` [B,S,S,1]) -> the recognizer's
    outputs, through DepthNet and the augmentation's transformation (see module)."""
    size_g = generator_size(generator)
    size_s = int(input_size or size_g)
    rgb = keras.Input((size_s, size_s, 3), name="rgb")
    inputs = {"rgb": rgb}
    rgb_g = ResizeImages(size_s, size_g, "bilinear_antialias", name="resize_input")(rgb)
    generated = generator(rgb_g, training=False)
    has_mask = "mask" in generated
    parts = {"rgb": rgb_g, "depth": generated["depth"]}
    if has_mask:
        parts["mask"] = generated["mask"]
    transformed = GeneratedRGBD(size_g, recognizer_size, has_mask, name="generated_rgbd")(parts)
    if sensor_depth:
        depth = keras.Input((size_s, size_s, 1), name="depth")
        inputs["depth"] = depth
        at_g = ResizeImages(size_s, size_g, "area", masked=True, name="sensor_depth_to_g")(depth)
        transformed = dict(transformed)
        transformed["depth"] = ResizeImages(size_g, recognizer_size, "area", masked=True,
                                            name="sensor_depth_to_r")(at_g)
    encoder = recognizer_lib.build_inference_model(recognizer, recognizer_size)
    recognizer_inputs = {name: transformed[name] for name in recognizer.modalities}
    outputs = _embedding_outputs(encoder, recognizer_inputs, recognizer.branches, flip_test)
    return keras.Model(inputs, outputs, name="pipeline_sensor" if sensor_depth else "pipeline")


def build_graph(name: str, generator: Optional[keras.Model] = None, recognizer=None,
                recognizer_size: Optional[int] = None, input_size: Optional[int] = None,
                flip_test: bool = True) -> keras.Model:
    """One of GRAPHS from the loaded models (the ones the graph needs must be given)."""
    if name not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; choose from {GRAPHS}")
    if name in ("depthnet", "pipeline", "pipeline_sensor") and generator is None:
        raise ValueError(f"graph {name!r} needs the depth generator")
    if name != "depthnet" and (recognizer is None or not recognizer_size):
        raise ValueError(f"graph {name!r} needs the recognizer and its image size")
    if name == "depthnet":
        return depthnet_graph(generator)
    if name == "recognizer":
        return recognizer_graph(recognizer, recognizer_size, flip_test)
    return pipeline_graph(generator, recognizer, recognizer_size, input_size, flip_test,
                          sensor_depth=name == "pipeline_sensor")
