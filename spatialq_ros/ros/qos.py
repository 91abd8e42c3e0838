"""QoS: sensors best-effort depth 1 (stale frames drop while inference runs), outputs reliable."""

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

SENSOR_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1)
OUTPUT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
