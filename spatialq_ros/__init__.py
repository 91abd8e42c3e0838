"""spatialq_ros: W4A8 DINOv2 perception for drones and tractors."""

__version__ = "0.1.0"
