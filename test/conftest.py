"""Suite-wide settings: 2-core CI machine, so tests keep torch to one thread each."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
