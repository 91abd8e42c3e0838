"""ament_python package: `colcon build` on a ROS 2 machine, `pip install -e .` elsewhere."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "spatialq_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/models", [f"{PACKAGE}/data/models.json", "models/README.md"]),
    ],
    package_data={PACKAGE: ["data/*.json"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="spatialq_ros developers",
    maintainer_email="spatialq@example.invalid",
    description="W4A8 DINOv2 perception for drones and tractors: grid keypoints, place recognition, field boundaries.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "spatialq = spatialq_ros.cli:main",
            "perception_node = spatialq_ros.ros.perception_node:main",
            "map_builder_node = spatialq_ros.ros.map_builder_node:main",
            "calibration_node = spatialq_ros.ros.calibration_node:main",
        ],
    },
)
