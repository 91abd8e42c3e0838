"""sensor_msgs/PointCloud2 as tables, ROS-free: the datatype codes and the decoder that both the nodes'
message code and the replay report (reading recorded bags with `rosbags`) use."""

from __future__ import annotations

import numpy as np

# PointField datatype code -> numpy dtype (sensor_msgs/PointField: INT8 = 1 ... FLOAT64 = 8)
POINT_TYPES = {1: np.dtype(np.int8), 2: np.dtype(np.uint8), 3: np.dtype(np.int16), 4: np.dtype(np.uint16),
               5: np.dtype(np.int32), 6: np.dtype(np.uint32), 7: np.dtype(np.float32), 8: np.dtype(np.float64)}
DATATYPES = {dtype: code for code, dtype in POINT_TYPES.items()}


def cloud_rows(msg) -> np.ndarray:
    """A PointCloud2 (rclpy or rosbags) -> numpy structured array, honouring offsets and point_step; a field
    with count D > 1 becomes a (D,) column."""
    names, formats, offsets = [], [], []
    for f in msg.fields:
        names.append(f.name)
        formats.append((POINT_TYPES[f.datatype], (f.count,)) if f.count > 1 else POINT_TYPES[f.datatype])
        offsets.append(f.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    return np.frombuffer(np.asarray(msg.data, np.uint8).tobytes(), dtype=dtype, count=msg.width * msg.height)
