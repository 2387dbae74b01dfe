"""Producers for writer tests, in a module that imports no TensorFlow: spawned workers
unpickle them by reference, and must not pay the TensorFlow import."""
from tests.examples import make_face_example
from tf_rgbd.data import errors


def produce_example(index: int):
    return [make_face_example(index, size=16, label=index % 3)]


def produce_or_fail(index: int, bad: frozenset = frozenset(), interrupt_at: int = -1):
    if index == interrupt_at:
        raise KeyboardInterrupt("simulated kill")
    if index in bad:
        raise errors.NoFaceError("no_face", f"task {index} has no face")
    return produce_example(index)
