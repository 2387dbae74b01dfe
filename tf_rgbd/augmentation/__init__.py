"""Dataset augmentation with trained models: 2D faces -> RGB-D (D*, M*) with DepthNet
(:mod:`~tf_rgbd.augmentation.generated_rgbd`)."""
