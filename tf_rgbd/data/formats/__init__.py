"""Parsers of the real datasets' file formats, one format per module: Bosphorus ``.bnt``,
FRGC ``.abs``, BU-3DFE VRML ``.wrl`` and Biwi's run-length ``.bin`` depth.

Every parser raises :class:`tf_rgbd.data.errors.MalformedFileError` (reason
``malformed_<format>``) or :class:`~tf_rgbd.data.errors.MissingFileError` with a message naming
the file and what was wrong, so builders skip bad files by default and stop on them with
``--on_error=fail``."""
