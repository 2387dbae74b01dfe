"""Errors of the data layer: why an input was skipped, and why a build failed.

Every reason is a short snake_case key that the dataset writer counts in the manifest's
``skipped`` table. A producer (a dataset reader, the face preprocessor, an image reader) raises
one of these; the writer counts it and goes on (``on_error="skip"``) or stops with
:class:`BuildError` naming the task (``on_error="fail"``). Library users catch the specific
class (``except NoFaceError``) or the base (``except SkipExample``).

Hierarchy::

    SkipExample                 any known reason to skip one input (reason, message)
      InputFileError            a file is missing, empty or cannot be decoded
        MissingFileError        missing_file / empty_file
        CorruptImageError       corrupt_image / corrupt_depth
        MalformedFileError      malformed_<format> (bnt, abs, wrl, biwi_bin, ...)
      InvalidDepthError         nan_depth, negative_depth, bad_depth_shape, depth_size_mismatch,
                                no_valid_depth, ...
      FaceNotUsableError        the face preprocessing cannot give one face
        NoFaceError             no_face
        MultipleFacesError      multiple_faces
        TinyFaceError           tiny_face
    BuildError                  a task failed with on_error="fail" (names task and cause)
"""
from __future__ import annotations


class SkipExample(Exception):
    """Raised by a producer to skip a task for a known reason (counted, never fatal).

    Args:
      reason: short snake_case key for the manifest's ``skipped`` table (``no_face``,
        ``corrupt_image``, ``depth_size_mismatch``...).
      message: what was wrong (and where: file, record), for the log.
    """

    default_reason = "skipped"

    def __init__(self, reason: str = "", message: str = ""):
        reason = reason or self.default_reason
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message

    def __reduce__(self):
        # Picklable across worker processes with the same (reason, message).
        return (self.__class__, (self.reason, self.message))


class InputFileError(SkipExample):
    """An input file is missing, empty, truncated or cannot be decoded."""

    default_reason = "bad_file"


class MissingFileError(InputFileError):
    """``missing_file`` (does not exist) or ``empty_file`` (zero bytes)."""

    default_reason = "missing_file"


class CorruptImageError(InputFileError):
    """``corrupt_image`` / ``corrupt_depth``: truncated or undecodable image data."""

    default_reason = "corrupt_image"


class MalformedFileError(InputFileError):
    """``malformed_<format>``: a scan/frame file that does not follow its documented format."""

    default_reason = "malformed_file"


class InvalidDepthError(SkipExample):
    """Depth values or shapes that cannot be used (NaN, negative, wrong size, no valid pixel)."""

    default_reason = "invalid_depth"


class FaceNotUsableError(SkipExample):
    """The face preprocessing cannot give exactly one usable face for this image."""

    default_reason = "no_face"


class NoFaceError(FaceNotUsableError):
    """``no_face``: no face detected above the score threshold."""

    default_reason = "no_face"


class MultipleFacesError(FaceNotUsableError):
    """``multiple_faces``: several faces and no way to tell which is the subject."""

    default_reason = "multiple_faces"


class TinyFaceError(FaceNotUsableError):
    """``tiny_face``: the face is smaller than the minimum size."""

    default_reason = "tiny_face"


class BuildError(RuntimeError):
    """A task failed with ``on_error="fail"``; the message names the task and the cause."""
