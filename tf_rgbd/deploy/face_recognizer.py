"""Face recognition at the task level: photographs in, embeddings and per-face metadata out.

    from tf_rgbd.deploy.face_recognizer import FaceRecognizer
    recognizer = FaceRecognizer.from_export("exports/demo")
    faces = recognizer.embed("photo.jpg")          # or a uint8 [H, W, 3] RGB array, or a list

Every face goes through exactly what the training data went through:

1. MediaPipe detection, landmarks and 5-point alignment of ``tf_rgbd.data.faces``
   (:class:`~tf_rgbd.data.faces.FaceAnalyzer`, :func:`~tf_rgbd.data.faces.align_face`), with the
   crop (ArcFace template or the looser DepthNet crop), crop size and detector settings the
   training dataset was built with (recorded in the export);
2. the conversion ``tf_rgbd.data.pipeline.make_dataset`` applies to a stored example: RGB to
   [0, 1] (``tf.image.convert_image_dtype``) and :func:`~tf_rgbd.data.pipeline.resize_rgb` to
   the graph's input size; a measured depth map (mm, registered to the photograph) warped with
   the face (nearest neighbour), :func:`~tf_rgbd.data.pipeline.normalize_depth` (nearest valid
   point -> 1) and :func:`~tf_rgbd.data.pipeline.masked_resize`;
3. the ``pipeline`` graph (``rgb`` -> DepthNet -> D*, M* -> recognizer) when no depth is given,
   ``pipeline_sensor`` (``rgb`` + measured depth) when it is
   (``tf_rgbd.deploy.graphs``), run by :class:`~tf_rgbd.deploy.session.InferenceSession` in
   any exported format.

The result holds, per face: the image it came from, its rank by size in that image, the
detection box and score, the 5 landmarks in image pixels, whether its depth was measured or
generated, the aligned crop, and the embeddings ``id_rgb`` / ``id_depth`` / ``score_embedding``
(L2-normalised; the dot product of two ``score_embedding`` s is the fused score).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tf_rgbd.data import faces as faces_lib
from tf_rgbd.data import image_io, pipeline
from tf_rgbd.data.errors import SkipExample
from tf_rgbd.deploy import gallery as gallery_lib
from tf_rgbd.deploy.session import ArtefactError, InferenceSession

PIPELINE_GRAPH = "pipeline"
SENSOR_GRAPH = "pipeline_sensor"
EMBEDDING_OUTPUTS = gallery_lib.EMBEDDING_OUTPUTS
# Formats tried, in order, when the caller asks for backend="auto".
AUTO_FORMATS = ("onnx", "tflite_fp32", "savedmodel", "keras")
ImageInput = Union[str, os.PathLike, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How photographs become graph inputs (what the training dataset's build did).

    Attributes:
      crop: ``arcface`` or ``depthnet`` (:func:`tf_rgbd.data.faces.alignment_template`).
      crop_size: side of the aligned crop in pixels (the dataset's ``image_size``).
      depth_range_mm: span of :func:`tf_rgbd.data.pipeline.normalize_depth`.
      face: detection settings (``tf_rgbd.data.faces.FaceConfig`` fields: ``min_score``,
        ``detector``, ``min_face_px``, ``ambiguous_face_ratio``, ``nms_iou_threshold``).
    """

    crop: str = "arcface"
    crop_size: int = faces_lib.ARCFACE_SIZE
    depth_range_mm: float = pipeline.DEFAULT_DEPTH_RANGE_MM
    face: Mapping = dataclasses.field(default_factory=dict)

    def face_config(self, multiple_faces: str) -> faces_lib.FaceConfig:
        known = {field.name for field in dataclasses.fields(faces_lib.FaceConfig)}
        values = {key: value for key, value in dict(self.face).items()
                  if key in known and key not in ("image_size", "crop", "multiple_faces")}
        return faces_lib.FaceConfig(image_size=self.crop_size, crop=self.crop,
                                    multiple_faces=multiple_faces, **values)


@dataclasses.dataclass(frozen=True)
class Face:
    """One embedded face.

    Attributes:
      image_index: which input image it came from.
      face_index: its rank by box area in that image (0 = the largest).
      source: the image's path ('' for arrays).
      box: (x, y, width, height) of the detection, image pixels.
      detection_score: the detector's confidence in [0, 1].
      landmarks5: float32 [5, 2] (x, y) image pixels: eyes, nose tip, mouth corners.
      depth_measured: True when a measured depth map was used, False when DepthNet's D* was.
      crop: uint8 [C, C, 3] the aligned face.
      embeddings: output name -> float32 [D] (``id_rgb``, ``id_depth``, ``score_embedding``).
    """

    image_index: int
    face_index: int
    source: str
    box: tuple
    detection_score: float
    landmarks5: np.ndarray
    depth_measured: bool
    crop: np.ndarray
    embeddings: Mapping[str, np.ndarray]

    @property
    def score_embedding(self) -> np.ndarray:
        return self.embeddings["score_embedding"]


class FaceList(list):
    """A list of :class:`Face` with the embeddings stacked: ``faces["score_embedding"]`` is
    float32 [N, D]."""

    def __getitem__(self, key):
        if isinstance(key, str):
            if not self:
                raise KeyError(f"no faces, so no {key!r} embeddings")
            return np.stack([face.embeddings[key] for face in self])
        return super().__getitem__(key)


class ExportDirectory:
    """An export directory's manifest (``tf_rgbd.deploy.export``'s layout): which artefact runs
    which graph in which format, and the preprocessing recorded with them."""

    def __init__(self, export_dir: str):
        from tf_rgbd.deploy import export as export_lib  # noqa: PLC0415
        self.directory = os.path.abspath(export_dir)
        path = os.path.join(self.directory, export_lib.MANIFEST_FILE)
        if not os.path.isfile(path):
            raise ArtefactError(f"{path} not found: is {export_dir} an export directory? "
                                "(python -m export.export --run_dir=RUN --output_dir=DIR)")
        try:
            self.manifest = export_lib.load_manifest(self.directory)
        except (OSError, ValueError) as error:
            raise ArtefactError(f"{path} is unreadable ({error}); re-run the export") from error
        self.artefacts = dict(self.manifest.get("artefacts") or {})

    def path_of(self, entry: Mapping) -> str:
        return os.path.join(self.directory, entry["path"])

    def find(self, graph: str, fmt: str) -> Optional[Mapping]:
        return self.artefacts.get(f"{graph}/{fmt}")

    def artefact(self, graph: str, fmt: str = "auto") -> Mapping:
        """The ``graph`` artefact in format ``fmt`` (``auto``: the first of AUTO_FORMATS)."""
        for candidate in (AUTO_FORMATS if fmt == "auto" else (fmt,)):
            entry = self.find(graph, candidate)
            if entry is not None:
                return entry
        raise ArtefactError(f"{self.directory}: no {graph} artefact in format {fmt!r} (the "
                            f"export has {sorted(self.artefacts) or 'nothing'}); export it with "
                            f"python -m export.export --graph={graph} --formats=...")

    def verified_path(self, entry: Mapping) -> str:
        """The artefact's path after checking its sha256 against the manifest."""
        from tf_rgbd.deploy import export as export_lib  # noqa: PLC0415
        path = self.path_of(entry)
        if not os.path.exists(path):
            raise ArtefactError(f"{path} is listed in {self.directory}/manifest.json but "
                                "missing; re-run the export")
        actual = export_lib.path_sha256(path)
        if actual != entry.get("sha256"):
            raise ArtefactError(f"{path}: sha256 {actual[:12]} differs from the manifest's "
                                f"{str(entry.get('sha256'))[:12]} (modified or truncated since "
                                "the export); re-run the export")
        return path

    def session(self, entry: Mapping, providers=None, num_threads=None):
        """An InferenceSession of the artefact (NHWC whatever its layout, see
        :class:`LayoutAdapter`)."""
        kwargs = {}
        if providers and entry.get("runtime") == "onnxruntime":
            kwargs["providers"] = providers
        if entry.get("tflite_op_resolver"):
            kwargs["tflite_op_resolver"] = entry["tflite_op_resolver"]
        session = InferenceSession(self.verified_path(entry), num_threads=num_threads,
                                   **kwargs)
        return LayoutAdapter(session) if entry.get("layout") == "NCHW" else session

    def preprocessing(self) -> Preprocessing:
        values = dict(self.manifest.get("preprocessing") or {})
        if "crop" not in values or not values.get("input_size"):
            raise ArtefactError(f"{self.directory}/manifest.json records no face crop "
                                "(preprocessing.crop / input_size); re-run the export")
        return preprocessing_from_record(values)


def preprocessing_from_record(record: Mapping) -> Preprocessing:
    """:class:`Preprocessing` from an export's ``preprocessing`` record
    (``tf_rgbd.deploy.export.preprocessing_record``)."""
    return Preprocessing(
        crop=record["crop"],
        crop_size=int(record.get("crop_image_size") or record["input_size"]),
        depth_range_mm=float(record.get("depth_range_mm") or pipeline.DEFAULT_DEPTH_RANGE_MM),
        face=dict(record.get("face") or {}))


class LayoutAdapter:
    """An NCHW artefact (``export --nchw``) behind an NHWC interface."""

    def __init__(self, session):
        from tf_rgbd.deploy.session import TensorSpec  # noqa: PLC0415
        self.session = session
        self.path = session.path
        self.backend = session.backend

        def nhwc(spec):
            shape = tuple(spec.shape)
            if len(shape) == 4:
                shape = (shape[0], shape[2], shape[3], shape[1])
            return TensorSpec(spec.name, shape, spec.dtype)
        self.input_specs = {name: nhwc(spec) for name, spec in session.input_specs.items()}
        self.output_specs = {name: nhwc(spec) for name, spec in session.output_specs.items()}
        self.input_names, self.output_names = session.input_names, session.output_names

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run({name: np.transpose(value, (0, 3, 1, 2)) if value.ndim == 4
                                    else value for name, value in inputs.items()})
        return {name: np.transpose(value, (0, 2, 3, 1)) if value.ndim == 4 else value
                for name, value in outputs.items()}


class KerasGraphSession:
    """An in-memory Keras graph behind :class:`InferenceSession`'s interface (``run`` etc.)."""

    backend = "keras"

    def __init__(self, model, path: str = ""):
        from tf_rgbd.deploy.session import TensorSpec  # noqa: PLC0415
        self.model = model
        self.path = path
        # The graphs take and return dicts of named tensors (tf_rgbd.deploy.graphs).
        self.input_specs = {name: TensorSpec(name, tuple(tensor.shape), "float32")
                            for name, tensor in sorted(dict(model.input).items())}
        self.output_specs = {name: TensorSpec(name, tuple(tensor.shape), "float32")
                             for name, tensor in sorted(dict(model.output).items())}
        self._forward = tf.function(lambda inputs: model(inputs, training=False),
                                    reduce_retracing=True)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.input_specs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.output_specs)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._forward({name: tf.constant(np.asarray(inputs[name], np.float32))
                                 for name in self.input_names})
        return {name: np.asarray(value) for name, value in outputs.items()}


class FaceRecognizer:
    """Detect -> align -> normalise -> embed, with exported graphs (see the module docstring).

    Args:
      pipeline_session: runs the ``pipeline`` graph (``rgb`` -> embeddings).
      preprocessing: the training data's crop and normalisation (:class:`Preprocessing`).
      sensor_session: optional, runs ``pipeline_sensor`` (``rgb`` + measured ``depth``).
      model_sha256: identifies the model (galleries check it); default: the sha256 of the
        pipeline session's artefact.
      description: names the model in messages.
      multiple_faces: ``all`` (every face of a photograph; default), ``largest`` (the subject,
        refusing ambiguous photographs) or ``skip`` (photographs of exactly one face).
    """

    def __init__(self, pipeline_session, preprocessing: Preprocessing, sensor_session=None,
                 model_sha256: Optional[str] = None, description: str = "",
                 multiple_faces: str = "all"):
        self.session = pipeline_session
        self.sensor_session = sensor_session
        self.preprocessing = preprocessing
        self.face_config = preprocessing.face_config(multiple_faces)
        self.analyzer = faces_lib.FaceAnalyzer(self.face_config)
        spec = pipeline_session.input_specs["rgb"]
        self.input_size = int(spec.shape[1])
        if sensor_session is not None:
            sensor_size = int(sensor_session.input_specs["rgb"].shape[1])
            if sensor_size != self.input_size:
                raise ValueError(f"pipeline input {self.input_size} and pipeline_sensor input "
                                 f"{sensor_size} differ")
        self.description = description or getattr(pipeline_session, "path", "")
        self._model_sha256 = model_sha256
        outputs = [name for name in EMBEDDING_OUTPUTS if name in pipeline_session.output_names]
        if "score_embedding" not in outputs:
            raise ValueError(f"{self.description}: the graph has no score_embedding output "
                             f"(outputs {list(pipeline_session.output_names)}); export the "
                             "pipeline graph")
        self.embedding_outputs = tuple(outputs)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_export(cls, export_dir: str, backend: str = "auto", multiple_faces: str = "all",
                    providers: Optional[Sequence[str]] = None,
                    num_threads: Optional[int] = None) -> "FaceRecognizer":
        """The recognizer of an export directory (``python -m export.export``).

        Args:
          export_dir: holds ``manifest.json`` and the artefacts of the ``pipeline`` graph (and
            optionally ``pipeline_sensor``).
          backend: an exported format (``keras``, ``savedmodel``, ``onnx``, ``onnx_int8``,
            ``tflite_fp32``, ``tflite_int8``...) or ``auto`` (the first of ``AUTO_FORMATS``
            that was exported).
        Raises:
          ArtefactError: no manifest, no pipeline graph in that format, or an artefact whose
            sha256 differs from the manifest's (modified or truncated since the export).
        """
        export = ExportDirectory(export_dir)
        entry = export.artefact(PIPELINE_GRAPH, backend)
        sensor = export.find(SENSOR_GRAPH, entry["format"])
        session = export.session(entry, providers, num_threads)
        sensor_session = None if sensor is None else export.session(sensor, providers,
                                                                    num_threads)
        return cls(session, export.preprocessing(), sensor_session,
                   model_sha256=entry["sha256"],
                   description=f"{export.path_of(entry)} ({PIPELINE_GRAPH}, {entry['format']})",
                   multiple_faces=multiple_faces)

    @classmethod
    def from_run_dir(cls, run_dir: str, multiple_faces: str = "all") -> "FaceRecognizer":
        """The recognizer of a trained recognizer run (its ``config.json`` names the augmented
        dataset and through it the depth generator), with the graphs built in memory (Keras).
        """
        from tf_rgbd.config.export import ExportConfig  # noqa: PLC0415
        from tf_rgbd.deploy import export as export_lib  # noqa: PLC0415
        from tf_rgbd.deploy import graphs  # noqa: PLC0415
        sources = export_lib.resolve_sources(ExportConfig(run_dir=run_dir,
                                                          graph=PIPELINE_GRAPH))
        built = {name: KerasGraphSession(graphs.build_graph(
            name, sources.generator, sources.recognizer, sources.recognizer_size),
            os.path.abspath(run_dir)) for name in (PIPELINE_GRAPH, SENSOR_GRAPH)}
        digest = hashlib.sha256("+".join(
            export_lib.path_sha256(path) for path in (sources.depthnet_file,
                                                      sources.recognizer_file)
            if path and os.path.isfile(path)).encode()).hexdigest()
        return cls(built[PIPELINE_GRAPH], preprocessing_from_record(sources.preprocessing),
                   built[SENSOR_GRAPH], model_sha256=digest,
                   description=f"run {os.path.abspath(run_dir)} (Keras, in memory)",
                   multiple_faces=multiple_faces)

    def close(self) -> None:
        """Releases MediaPipe's graphs."""
        self.analyzer.close()

    def __enter__(self) -> "FaceRecognizer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def model_sha256(self) -> str:
        if self._model_sha256 is None:
            from tf_rgbd.deploy import export as export_lib  # noqa: PLC0415
            self._model_sha256 = export_lib.path_sha256(self.session.path)
        return self._model_sha256

    @property
    def embedding_dims(self) -> dict[str, int]:
        dims = {}
        for name in self.embedding_outputs:
            shape = self.session.output_specs[name].shape
            dims[name] = int(shape[-1])
        return dims

    @property
    def model_identity(self) -> gallery_lib.ModelIdentity:
        """What a gallery records and checks (sha256, embedding dims, description)."""
        return gallery_lib.ModelIdentity(self.model_sha256, self.embedding_dims,
                                         self.description)

    # ------------------------------------------------------------------ preprocessing

    def align(self, image: np.ndarray, depth_mm: Optional[np.ndarray] = None,
              where: str = "image") -> list[tuple[faces_lib.FaceAnalysis, faces_lib.AlignedFace]]:
        """The faces of one photograph, detected and aligned as the dataset builders do.

        Raises:
          SkipExample: ``no_face``, ``tiny_face``, ``multiple_faces`` (see
            ``tf_rgbd.data.faces``).
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{where}: expected a uint8 [H, W, 3] RGB image, got "
                             f"{image.dtype} {image.shape}")
        if depth_mm is not None:
            depth_mm = image_io.check_depth_mm(depth_mm, where, image.shape[:2])
        config = self.face_config
        if config.multiple_faces == "all":
            analyses = self.analyzer.analyze_all(image, where)
        else:
            analyses = [self.analyzer.analyze(image, where)]
        return [(analysis, faces_lib.align_face(image, analysis.landmarks5, config.image_size,
                                                config.crop, depth=depth_mm))
                for analysis in analyses]

    def model_inputs(self, crops: np.ndarray, depth_crops_mm: Optional[np.ndarray] = None
                     ) -> dict[str, np.ndarray]:
        """Graph inputs from aligned crops, as ``make_dataset`` makes them from stored ones.

        Args:
          crops: uint8 [N, C, C, 3] aligned faces.
          depth_crops_mm: optional float [N, C, C] aligned depth in mm (0 = no data).
        Returns:
          ``rgb`` float32 [N, S, S, 3] in [-1, 1] (and ``depth`` float32 [N, S, S, 1] in
          [0, 1], 0 = background).
        """
        rgb = tf.image.convert_image_dtype(tf.constant(np.asarray(crops, np.uint8)), tf.float32)
        inputs = {"rgb": pipeline.resize_rgb(rgb, self.input_size).numpy()}
        if depth_crops_mm is not None:
            depth = tf.constant(np.asarray(depth_crops_mm, np.float32)[..., None])
            normalised = pipeline.normalize_depth(depth, self.preprocessing.depth_range_mm)
            inputs["depth"] = pipeline.masked_resize(normalised, self.input_size).numpy()
        return inputs

    # ------------------------------------------------------------------ embedding

    def embed_aligned(self, crops: np.ndarray, depth_crops_mm: Optional[np.ndarray] = None
                      ) -> dict[str, np.ndarray]:
        """Embeddings of aligned crops: output name -> float32 [N, D]."""
        inputs = self.model_inputs(crops, depth_crops_mm)
        if depth_crops_mm is None:
            outputs = self.session.run(inputs)
        else:
            if self.sensor_session is None:
                raise ArtefactError(
                    f"{self.description}: depth was given but the export has no "
                    f"{SENSOR_GRAPH} graph; export it (--graph={SENSOR_GRAPH}) or embed "
                    "without depth (DepthNet generates it)")
            outputs = self.sensor_session.run(inputs)
        return {name: np.asarray(outputs[name], np.float32) for name in self.embedding_outputs}

    def embed(self, images: Union[ImageInput, Sequence[ImageInput]],
              depth_mm: Optional[Union[np.ndarray, Sequence[Optional[np.ndarray]]]] = None,
              batch_size: int = 32, sources: Optional[Sequence[str]] = None) -> FaceList:
        """Detects, aligns and embeds every face of one or more photographs.

        Args:
          images: an image path, a uint8 [H, W, 3] RGB array, a list of either, or a uint8
            [N, H, W, 3] batch.
          depth_mm: optional depth registered to the photograph(s), float [H, W] mm (0 = no
            data), one per image (None entries: generate with DepthNet).
          batch_size: faces per graph call.
          sources: names of array images (file names) for the result and for messages.
        Returns:
          A :class:`FaceList` of :class:`Face` (images in order, faces largest first).
        Raises:
          SkipExample: an unreadable file, or a photograph without a usable face (the
            message names it).
        """
        single = isinstance(images, (str, os.PathLike)) or (
            isinstance(images, np.ndarray) and images.ndim == 3)
        image_list = [images] if single else list(images)
        if depth_mm is None:
            depth_list = [None] * len(image_list)
        elif single or (isinstance(depth_mm, np.ndarray) and depth_mm.ndim == 2):
            depth_list = [depth_mm]
        else:
            depth_list = list(depth_mm)
        if len(depth_list) != len(image_list):
            raise ValueError(f"{len(image_list)} images but {len(depth_list)} depth maps")
        pending = []   # (Face fields, crop, depth crop)
        for index, (image, depth) in enumerate(zip(image_list, depth_list)):
            is_path = isinstance(image, (str, os.PathLike))
            source = os.fspath(image) if is_path else (sources[index] if sources else "")
            where = source or f"image {index}"
            rgb = image_io.read_rgb(source) if is_path else np.asarray(image)
            for analysis, aligned in self.align(rgb, depth, where):
                pending.append((index, analysis, source, aligned))
        faces = FaceList()
        for measured in (False, True):
            group = [item for item in pending if (item[3].depth is not None) == measured]
            for start in range(0, len(group), batch_size):
                chunk = group[start:start + batch_size]
                crops = np.stack([aligned.rgb for *_, aligned in chunk])
                depth_crops = (np.stack([aligned.depth for *_, aligned in chunk])
                               if measured else None)
                outputs = self.embed_aligned(crops, depth_crops)
                for row, (index, analysis, source, aligned) in enumerate(chunk):
                    faces.append(Face(
                        image_index=index, face_index=analysis.face_index, source=source,
                        box=tuple(float(v) for v in analysis.detection.box),
                        detection_score=float(analysis.detection.score),
                        landmarks5=np.asarray(analysis.landmarks5, np.float32),
                        depth_measured=measured, crop=aligned.rgb,
                        embeddings={name: value[row] for name, value in outputs.items()}))
        faces.sort(key=lambda face: (face.image_index, face.face_index))
        return faces


class EnrolmentError(gallery_lib.GalleryError):
    """Some photographs of an enrolment are unusable; nothing was enrolled.

    Attributes:
      problems: one line per bad photograph (file: what is wrong).
    """

    def __init__(self, subject: str, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"nothing enrolled for {subject!r}: {len(self.problems)} unusable "
                         f"photograph(s): " + "; ".join(self.problems))


def read_images(paths: Sequence[str], depth_paths: Sequence[str] = ()
                ) -> Iterator[tuple[str, Optional[np.ndarray], Optional[np.ndarray], str]]:
    """(path, rgb uint8 [H, W, 3], depth mm [H, W] or None, problem) per photograph: the
    problem is '' when it reads, else one line naming the file (rgb is then None)."""
    if depth_paths and len(depth_paths) != len(paths):
        raise ValueError(f"{len(paths)} photographs but {len(depth_paths)} depth images; give "
                         "one depth image per photograph, in order (or none)")
    for index, path in enumerate(paths):
        try:
            rgb = image_io.read_rgb(path)
            depth = (image_io.read_depth_png_mm(depth_paths[index],
                                                expected_shape=rgb.shape[:2])
                     if depth_paths else None)
            yield path, rgb, depth, ""
        except SkipExample as error:
            yield path, None, None, _naming(path, error)


def embed_files(recognizer: FaceRecognizer, paths: Sequence[str],
                depth_paths: Sequence[str] = ()) -> Iterator[tuple[str, FaceList, str]]:
    """(path, faces, problem) per photograph, embedded one by one; ``problem`` is '' or one
    line naming the file and what is wrong (unreadable, no usable face)."""
    for path, rgb, depth, problem in read_images(paths, depth_paths):
        if problem:
            yield path, FaceList(), problem
            continue
        try:
            faces = recognizer.embed(rgb, depth, sources=[path])
        except SkipExample as error:
            yield path, FaceList(), _naming(path, error)
            continue
        yield path, faces, ""


def _naming(path: str, error: Exception) -> str:
    """The error's message, prefixed with the file unless it names it already."""
    message = str(error)
    return message if path in message else f"{path}: {message}"


def enroll_files(gallery: gallery_lib.Gallery, recognizer: FaceRecognizer, subject: str,
                 paths: Sequence[str], depth_paths: Sequence[str] = (),
                 progress=None) -> int:
    """Enrols the subject's face of every photograph in ONE gallery transaction (the
    transaction spans the embedding: a crash leaves nothing of it).

    Every photograph is tried; if any is unusable nothing is enrolled and
    :class:`EnrolmentError` lists them all. Returns the number of faces enrolled.
    """
    problems: list[str] = []

    def faces():
        for index, (path, found, problem) in enumerate(embed_files(recognizer, paths,
                                                                   depth_paths)):
            if progress is not None:
                progress(index + 1, len(paths), path)
            if problem:
                problems.append(problem)
                continue
            for face in found:
                yield gallery_lib.EnrolledFace(os.path.abspath(path), face.embeddings,
                                               face.face_index, face.depth_measured)
        if problems:
            raise EnrolmentError(subject, problems)

    return gallery.enroll(subject, faces())


def protocol_threshold(recognizer: FaceRecognizer, data_dir: str, protocol_name: str,
                       far_target: float, method: str = "fused", batch_size: int = 32
                       ) -> gallery_lib.Threshold:
    """The verification threshold for ``far_target`` measured on a dataset's protocol with
    this recognizer's own graph: the protocol split's stored crops go through the pipeline
    graph (as ``make_dataset`` reads them), all probe x gallery pairs are scored.

    Raises:
      ValueError: too few impostor pairs for ``far_target``.
    """
    from tf_rgbd.data.protocol import load_protocol, protocol_path  # noqa: PLC0415
    from tf_rgbd.eval.embeddings import EmbeddingSet  # noqa: PLC0415
    output = gallery_lib.METHOD_OUTPUTS[method]
    protocol = load_protocol(protocol_path(data_dir, protocol_name))
    batches = pipeline.make_dataset(data_dir, split=protocol.split, batch_size=batch_size,
                                    image_size=recognizer.input_size, modalities=("rgb",),
                                    with_metadata=True, deterministic=True)
    ids, labels, features = [], [], []
    for batch in batches.as_numpy_iterator():
        outputs = recognizer.session.run({"rgb": batch["rgb"]})
        features.append(np.asarray(outputs[output], np.float32))
        ids += [value.decode() for value in batch["example_id"]]
        labels.append(batch["label"])
    embedded = EmbeddingSet(np.array(ids), np.concatenate(labels),
                            {method: np.concatenate(features)})
    gallery = embedded.select(protocol.gallery, "gallery")
    probes = embedded.select(protocol.all_probe_ids(), "probes")
    return gallery_lib.choose_threshold(
        probes.features[method], probes.labels, gallery.features[method], gallery.labels,
        far_target, method, protocol=f"{os.path.abspath(data_dir)}:{protocol.name}")


def describe_face(face: Face) -> str:
    """One line: where the face is and how its depth was obtained."""
    x, y, w, h = face.box
    where = face.source or f"image {face.image_index}"
    return (f"{where} face {face.face_index}: box {w:.0f}x{h:.0f} at ({x:.0f}, {y:.0f}), "
            f"score {face.detection_score:.2f}, depth "
            f"{'measured' if face.depth_measured else 'generated by DepthNet'}")


def write_embeddings_json(path: str, faces: Sequence[Face]) -> None:
    """The faces' metadata and embeddings as JSON (atomically)."""
    from tf_rgbd import io_utils  # noqa: PLC0415
    io_utils.atomic_write_text(path, json.dumps([{
        "image_index": face.image_index, "face_index": face.face_index, "source": face.source,
        "box": list(face.box), "detection_score": face.detection_score,
        "landmarks5": face.landmarks5.tolist(), "depth_measured": face.depth_measured,
        "embeddings": {name: value.tolist() for name, value in face.embeddings.items()}}
        for face in faces], indent=1))
