"""A clock that ticks, and crashes after a few ticks (to show restarts with backoff)."""

import sys
import time

for tick in range(1, 4):
    print(f"tick {tick}", flush=True)
    time.sleep(0.4)
print("clock: something went wrong", file=sys.stderr, flush=True)
sys.exit(1)
