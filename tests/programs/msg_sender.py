"""A sending child: msg_sender.py PID COUNT [GROUP]. Sends "<own pid>:<i>" for i in 0..COUNT-1."""

import os
import sys

import gproc

target, count = int(sys.argv[1]), int(sys.argv[2])
group = sys.argv[3] if len(sys.argv) > 3 else ""
me = os.getpid()
for i in range(count):
    gproc.send(target, f"{me}:{i}", group, timeout=30)
