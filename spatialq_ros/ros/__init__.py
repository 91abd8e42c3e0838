"""The only layer that imports rclpy and ROS message packages."""
