"""DINOv2 ViT backbones in plain torch (except `preprocess`, which stays torch-free for the deploy path)."""
