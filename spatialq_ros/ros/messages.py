"""numpy -> ROS messages, fast: byte payloads go in through array.array('B') views, never `bytes`."""

from __future__ import annotations

import array

import numpy as np
from geometry_msgs.msg import Point, Point32, PolygonStamped
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ..point_cloud import DATATYPES


def byte_array(data: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(data)).cast("B"))
    return out


def mono8_image(header: Header, mask: np.ndarray) -> Image:
    msg = Image(header=header, height=int(mask.shape[0]), width=int(mask.shape[1]), encoding="mono8",
                is_bigendian=0, step=int(mask.shape[1]))
    msg.data = byte_array(mask.astype(np.uint8))
    return msg


def table_cloud(header: Header, columns: dict[str, np.ndarray]) -> PointCloud2:
    """One point per row; a 2-D column (N, D) becomes one field with count = D (e.g. int8 descriptors)."""
    n = len(next(iter(columns.values()))) if columns else 0
    dtype_fields, fields, offset = [], [], 0
    for name, values in columns.items():
        values = np.asarray(values)
        count = 1 if values.ndim == 1 else int(values.shape[1])
        fields.append(PointField(name=name, offset=offset, datatype=DATATYPES[values.dtype], count=count))
        dtype_fields.append((name, values.dtype, (count,)) if count > 1 else (name, values.dtype))
        offset += values.dtype.itemsize * count
    points = np.zeros(n, dtype=np.dtype(dtype_fields)) if dtype_fields else np.zeros(0, np.uint8)
    for name, values in columns.items():
        points[name] = values
    msg = PointCloud2(header=header, height=1, width=n, fields=fields, is_bigendian=False, point_step=offset,
                      row_step=offset * n, is_dense=True)
    msg.data = byte_array(points.view(np.uint8) if n else np.zeros(0, np.uint8))
    return msg


def polygon(header: Header, exterior: np.ndarray) -> PolygonStamped:
    msg = PolygonStamped(header=header)
    msg.polygon.points = [Point32(x=float(x), y=float(y), z=0.0) for x, y in exterior]
    return msg


def boundary_markers(header: Header, rings: list[np.ndarray]) -> MarkerArray:
    """Field boundaries as closed line strips in input-image pixels (z = 0), after a DELETEALL of the last set."""
    markers = [Marker(header=header, ns="field_boundaries", action=Marker.DELETEALL)]
    for i, ring in enumerate(rings):
        m = Marker(header=header, ns="field_boundaries", id=i, type=Marker.LINE_STRIP, action=Marker.ADD)
        m.pose.orientation.w = 1.0
        m.scale.x = 2.0
        m.color.r, m.color.g, m.color.b, m.color.a = 1.0, 0.85, 0.0, 1.0
        closed = np.vstack([ring, ring[:1]])
        m.points = [Point(x=float(x), y=float(y), z=0.0) for x, y in closed]
        markers.append(m)
    return MarkerArray(markers=markers)


def place_markers(header: Header, positions: np.ndarray, similarities: np.ndarray,
                  frame_id: str = "map") -> MarkerArray:
    """Candidate places as spheres in the map frame (input stamp), the best one largest and green."""
    stamped = Header(stamp=header.stamp, frame_id=frame_id)
    markers = [Marker(header=stamped, ns="place_candidates", action=Marker.DELETEALL)]
    for rank, (xyz, sim) in enumerate(zip(positions, similarities)):
        m = Marker(header=stamped, ns="place_candidates", id=rank, type=Marker.SPHERE, action=Marker.ADD)
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in xyz[:3])
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = 6.0 if rank == 0 else 3.0
        m.color.r, m.color.g, m.color.b = (0.1, 0.9, 0.2) if rank == 0 else (0.9, 0.5, 0.1)
        m.color.a = float(np.clip(sim, 0.2, 1.0))
        markers.append(m)
    return MarkerArray(markers=markers)
