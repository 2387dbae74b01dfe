"""tf-rgbd: segmentation-aware face depth GAN and segmentation-guided RGB-D face recognition."""

__version__ = "0.1.0"
