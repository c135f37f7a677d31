"""A worker that processes a job every $JOB_INTERVAL seconds and reports to its supervisor."""

import os
import time

interval = float(os.environ.get("JOB_INTERVAL", "1"))
name = os.environ.get("GPROC_SERVICE", "worker")
try:
    import gproc

    # Services can talk to `gproc up` (their gproc parent) through gproc messaging.
    gproc.send(gproc.ppid(), f"{name} is ready for jobs")
except (ImportError, AttributeError, OSError):
    pass

job = 0
while True:
    job += 1
    print(f"job {job} done", flush=True)
    time.sleep(interval)
