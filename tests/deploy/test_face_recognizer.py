"""FaceRecognizer on a real photograph (skimage's astronaut): the dataset builders' alignment,
the data pipeline's conversion and normalisation (checked against make_dataset on the same
crop written as a TFRecord), the pipeline / pipeline_sensor graphs, the export's artefacts,
bad inputs, and the BUILD.md snippet; then ``python -m export.identify`` as a user runs it
(subprocesses, sharing this module's export): enrol, identify, list, remove, unusable
photographs (one error line each, exit 2, nothing enrolled), kill -9 in the middle of
enrolling many photographs (the gallery keeps whole enrolments only)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from tf_rgbd.data import faces as faces_lib  # noqa: E402
from tf_rgbd.data import pipeline, schema, writer  # noqa: E402
from tf_rgbd.data.errors import InvalidDepthError, NoFaceError  # noqa: E402
from tf_rgbd.deploy import gallery as gallery_lib  # noqa: E402
from tf_rgbd.deploy import face_recognizer  # noqa: E402
from tf_rgbd.deploy.face_recognizer import FaceRecognizer  # noqa: E402
from tf_rgbd.deploy.session import ArtefactError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def export_dir(tiny_system, tmp_path_factory):
    """The tiny system's ``pipeline`` graph exported (ONNX + the Keras reference the exporter
    always writes). Parity gates are the export tests' job (``verify=False`` here: they cost
    more than everything else in this module)."""
    from tf_rgbd.config.export import ExportConfig
    from tf_rgbd.deploy import export as export_lib
    output = str(tmp_path_factory.mktemp("export"))
    export_lib.export_run(ExportConfig(run_dir=tiny_system.run_dir, graph="pipeline",
                                       formats=("onnx",), output_dir=output, verify=False),
                          log=lambda line: None)
    return output


@pytest.fixture(scope="module")
def recognizer(export_dir):
    with FaceRecognizer.from_export(export_dir, backend="onnx") as loaded:
        yield loaded


@pytest.fixture(scope="module")
def run_recognizer(tiny_system):
    """The same run with both graphs (pipeline, pipeline_sensor) built in memory (Keras)."""
    with FaceRecognizer.from_run_dir(tiny_system.run_dir) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


def _face_depth_mm(image, box):
    """A plausible registered depth map: a face ellipse 600-660 mm deep, 0 (no data) around it,
    whole millimetres (so the dataset's 0.1 mm PNG quantisation is exact)."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    radius = ((xx - cx) / (0.7 * w)) ** 2 + ((yy - cy) / (0.9 * h)) ** 2
    return np.where(radius < 1, np.round(600.0 + 60.0 * radius), 0.0).astype(np.float32)


def test_embeds_a_real_photograph_exactly_like_the_training_data(run_recognizer, astronaut,
                                                                 tmp_path):
    recognizer = run_recognizer
    faces = recognizer.embed(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    assert 0 <= x < x + w <= 512 and 0 <= y < y + h <= 512 and w > 60
    assert face.landmarks5.shape == (5, 2) and not face.depth_measured
    assert 0.5 <= face.detection_score <= 1.0
    for name in ("id_rgb", "id_depth", "score_embedding"):
        assert np.linalg.norm(face.embeddings[name]) == pytest.approx(1.0, abs=1e-4)
    # score_embedding . score_embedding' = mean of the branch cosines (the fused score).
    expected = np.concatenate([face.embeddings["id_rgb"], face.embeddings["id_depth"]])
    np.testing.assert_allclose(face.score_embedding, expected / np.sqrt(2), atol=1e-5)
    assert faces["score_embedding"].shape == (1, recognizer.embedding_dims["score_embedding"])

    # Alignment: what the dataset builders' FacePreprocessor makes of the same photograph.
    config = recognizer.face_config
    built = faces_lib.FacePreprocessor(faces_lib.FaceConfig(
        image_size=config.image_size, crop=config.crop))(astronaut)
    np.testing.assert_array_equal(face.crop, built.rgb)

    # Conversion + depth normalisation: make_dataset on the same crop (and a registered depth
    # map) written as a TFRecord gives the very same graph inputs.
    depth_mm = _face_depth_mm(astronaut, face.box)
    aligned = recognizer.align(astronaut, depth_mm)[0][1]
    example = schema.FaceExample(example_id="astronaut", rgb=aligned.rgb, label=0,
                                 subject="eileen", dataset="photo", depth=aligned.depth,
                                 rgb_format="png")
    data_dir = str(tmp_path / "one")
    splits = {"test": writer.write_split(data_dir, "test", [0], lambda _: [example],
                                         num_shards=1, progress=False)}
    writer.write_manifest(data_dir, "one", ["eileen"], splits)
    batch = next(pipeline.make_dataset(
        data_dir, "test", batch_size=1, image_size=recognizer.input_size,
        modalities=("rgb", "depth"), depth_range_mm=recognizer.preprocessing.depth_range_mm
    ).as_numpy_iterator())
    inputs = recognizer.model_inputs(aligned.rgb[None], aligned.depth[None])
    np.testing.assert_allclose(inputs["rgb"], batch["rgb"], atol=1e-6)
    np.testing.assert_allclose(inputs["depth"], batch["depth"], atol=1e-6)
    assert (inputs["depth"] > 0).mean() > 0.2

    # Embeddings: the pipeline graph on those inputs (DepthNet generates D* and M*).
    direct = recognizer.session.run({"rgb": inputs["rgb"]})
    np.testing.assert_allclose(direct["score_embedding"][0], face.score_embedding, atol=1e-5)

    # With a measured depth map the pipeline_sensor graph runs instead.
    measured = recognizer.embed(astronaut, depth_mm=depth_mm)[0]
    assert measured.depth_measured
    sensor = recognizer.sensor_session.run(inputs)
    np.testing.assert_allclose(sensor["score_embedding"][0], measured.score_embedding,
                               atol=1e-5)
    # (The tiny run's depth branch is gated to a constant by its attention, so D* and the
    # measured depth give the same id_depth here; that the measured depth is what reaches the
    # graph is the input equality above.)


def test_backends_agree_and_the_run_dir_gives_the_same_embeddings(recognizer, run_recognizer,
                                                                   export_dir, astronaut,
                                                                   tmp_path):
    reference = recognizer.embed(astronaut)[0]
    assert recognizer.session.backend == "onnx" and recognizer.sensor_session is None
    np.testing.assert_allclose(run_recognizer.embed(astronaut)[0].score_embedding,
                               reference.score_embedding, atol=1e-4)
    with FaceRecognizer.from_export(export_dir, backend="keras") as keras_recognizer:
        np.testing.assert_allclose(keras_recognizer.embed(astronaut)[0].score_embedding,
                                   reference.score_embedding, atol=1e-4)
        other = keras_recognizer.model_identity
    assert other.sha256 != recognizer.model_sha256 and other.dims == recognizer.embedding_dims
    # A gallery enrolled through one artefact refuses another.
    path = str(tmp_path / "g.db")
    with gallery_lib.Gallery(path, recognizer.model_identity) as gallery:
        gallery.enroll("eileen", [gallery_lib.EnrolledFace("a.jpg", reference.embeddings)])
    with pytest.raises(gallery_lib.ModelMismatchError, match=r"pipeline, onnx\)"):
        gallery_lib.Gallery(path, other)


def test_bad_inputs_name_what_is_wrong(recognizer, export_dir, tmp_path, astronaut):
    with pytest.raises(NoFaceError, match="image 0: no face"):
        recognizer.embed(skimage_data.coffee())
    with pytest.raises(ValueError, match="uint8"):
        recognizer.embed(astronaut.astype(np.float32))
    with pytest.raises(InvalidDepthError, match="depth_size_mismatch|differs"):
        recognizer.embed(astronaut, depth_mm=np.ones((10, 10), np.float32))
    with pytest.raises(ArtefactError, match="no pipeline_sensor graph"):
        recognizer.embed(astronaut, depth_mm=_face_depth_mm(astronaut, (200, 80, 100, 100)))
    with pytest.raises(ArtefactError, match="no pipeline artefact in format 'tflite_int8'"):
        FaceRecognizer.from_export(export_dir, backend="tflite_int8")
    tampered = str(tmp_path / "tampered")
    shutil.copytree(export_dir, tampered)
    onnx_file = os.path.join(tampered, "pipeline", "pipeline.onnx")
    with open(onnx_file, "r+b") as handle:
        handle.truncate(os.path.getsize(onnx_file) // 2)
    with pytest.raises(ArtefactError, match="sha256 .* differs from the manifest"):
        FaceRecognizer.from_export(tampered, backend="onnx")
    with pytest.raises(ArtefactError, match="not an export directory|manifest.json not found"):
        FaceRecognizer.from_export(str(tmp_path))


def test_the_build_md_snippet_embeds_a_real_photograph(export_dir, tmp_path, astronaut):
    import cv2
    text = open(os.path.join(ROOT, "BUILD.md"), encoding="utf-8").read()
    section = text[text.index("## Face recognition API and gallery"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in snippet.splitlines() if line.strip()]) == 3
    photo = str(tmp_path / "astronaut.jpg")
    cv2.imwrite(photo, cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    namespace: dict = {}
    exec(snippet.replace("/tmp/export", export_dir).replace("photo.jpg", photo),  # noqa: S102
         namespace)
    faces = namespace["faces"]
    assert len(faces) == 1 and faces["score_embedding"].shape[0] == 1


# --- python -m export.identify -------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import cv2
    folder = tmp_path_factory.mktemp("photos")
    astronaut = skimage_data.astronaut()
    paths = {"a1": astronaut, "a2": astronaut[:, ::-1], "coffee": skimage_data.coffee()}
    written = {}
    for name, image in paths.items():
        written[name] = str(folder / f"{name}.jpg")
        cv2.imwrite(written[name], cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    written["broken"] = str(folder / "broken.jpg")
    with open(written["a1"], "rb") as source, open(written["broken"], "wb") as target:
        target.write(source.read()[:3000])
    written["missing"] = str(folder / "missing.jpg")
    return written


def _identify(export, gallery, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "export.identify", f"--model={export}",
                           f"--gallery={gallery}", "--backend=onnx", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600, **kwargs)


def _enrolments(gallery):
    with gallery_lib.Gallery(gallery, None, create=False) as opened:
        assert opened.integrity_check() == "ok"
        return [(name, recorded, stored) for name, _, recorded, stored in opened.enrolments()]


def test_enrol_reject_bad_photos_survive_kill_9_identify_list_remove(recognizer, export_dir,
                                                                     photos, tmp_path):
    gallery = str(tmp_path / "g.db")
    # Enrolled through the library with the artefact the CLI runs (--backend=onnx).
    with gallery_lib.Gallery(gallery, recognizer.model_identity) as opened:
        count = face_recognizer.enroll_files(opened, recognizer, "eileen",
                                             [photos["a1"], photos["a2"]])
    assert count == 2

    # Unusable photographs: one error line each, exit 2, nothing of that enrolment kept.
    bad = _identify(export_dir, gallery, "enroll", "--subject=bob", photos["coffee"],
                    photos["broken"], photos["missing"], photos["a1"])
    assert bad.returncode == 2, bad.stderr[-3000:]
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    assert "coffee.jpg" in errors[0] and "no face" in errors[0]
    assert "broken.jpg" in errors[1] and "truncated" in errors[1]
    assert "missing.jpg" in errors[2] and "does not exist" in errors[2]
    assert _enrolments(gallery) == [("eileen", 2, 2)]

    # kill -9 while enrolling many photographs (the transaction spans the embedding).
    many = [photos["a1"], photos["a2"]] * 20
    process = subprocess.Popen([sys.executable, "-m", "export.identify",
                                f"--model={export_dir}", f"--gallery={gallery}",
                                "--backend=onnx", "enroll", "--subject=crowd", *many],
                               cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    for line in process.stdout:
        if line.startswith("embedded 5/40"):
            process.send_signal(signal.SIGKILL)
            break
        assert time.time() < deadline
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert _enrolments(gallery) == [("eileen", 2, 2)]

    # The gallery still works: identify (every face, top-k), list, remove.
    found = _identify(export_dir, gallery, "identify", photos["a2"], "--top_k=3")
    assert found.returncode == 0, found.stderr[-3000:]
    lines = found.stdout.splitlines()
    assert any(line.startswith(f"{photos['a2']} face 0: box") and "generated by DepthNet" in line
               for line in lines), found.stdout
    first = next(line for line in lines if line.strip().startswith("1."))
    assert first.split()[1] == "eileen" and float(first.split()[2]) > 0.99
    listed = _identify(export_dir, gallery, "list")
    assert listed.returncode == 0 and "eileen" in listed.stdout and "2 faces" in listed.stdout
    removed = _identify(export_dir, gallery, "remove", "--subject=eileen")
    assert removed.returncode == 0 and "removed eileen (2 faces)" in removed.stdout
    again = _identify(export_dir, gallery, "remove", "--subject=eileen")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("error: no subject 'eileen'")
