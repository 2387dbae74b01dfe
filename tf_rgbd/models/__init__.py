"""tf_rgbd.models."""
