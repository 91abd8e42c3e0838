"""Known DINOv2 checkpoints: where they come from and how to check them."""
