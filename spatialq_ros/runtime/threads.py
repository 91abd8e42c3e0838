"""One BLAS thread for the heads of a deploy process.

The heads' matrix products are small (VLAD: 256 x 384 x 32), and the engine's own thread pool is busy
spinning between frames; a multi-threaded BLAS next to it thrashes the cores. Measured on the 2-core CI
box with ONNX Runtime in the same process: place recognition 30 ms per frame with OpenBLAS threads,
0.7 ms with one.
"""

from __future__ import annotations


def single_threaded_blas():
    """Limit numpy's BLAS to one thread for the rest of the process; returns the limiter (keep it)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
