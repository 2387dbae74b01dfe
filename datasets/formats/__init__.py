"""Parsers of the real datasets' file formats (one format per module) and the shared scan
renderer. Every parser raises ``tf_rgbd.data.writer.SkipExample`` with a ``malformed_<format>``
reason and a message naming the file and what was wrong, so builders skip bad files by default
and stop on them with ``--on_error=fail``."""
