"""A worker that processes a job every $JOB_INTERVAL seconds and reports to its supervisor."""

import os
import time

import gproc

interval = float(os.environ.get("JOB_INTERVAL", "1"))
name = os.environ.get("GPROC_SERVICE", "worker")
if gproc.is_child():
    # Services can talk to `gproc up` (their gproc parent) through gproc messaging.
    gproc.send(gproc.ppid(), f"{name} is ready for jobs")

job = 0
while True:
    job += 1
    print(f"job {job} done", flush=True)
    time.sleep(interval)
