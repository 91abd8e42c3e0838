"""Procedural farmland flights written as rosbag2, with ground truth: the demo's and the tests' data."""
