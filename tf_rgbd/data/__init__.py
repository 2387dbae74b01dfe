"""Data layer: example schema, sharded TFRecord writer, tf.data pipeline, protocols, sources."""
