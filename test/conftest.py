"""Suite-wide settings: 2-core CI machine, so tests keep torch to one thread each; ROS tests talk over real
DDS on a domain of their own per run, so parallel runs on one machine do not hear each other."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)  # 1..100: valid Fast DDS domains
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
