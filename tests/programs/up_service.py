"""A service for gproc up tests: ``up_service.py MODE [ARGS]``.

Every mode first prints ``ready <GPROC_SERVICE> pid=<pid> port=<PORT>`` (flushed), so a test can
wait for it before it acts.

- ``serve``: run until signalled.
- ``exit N [FILE]``: exit with status N (once FILE exists, when given).
- ``env NAME...``: print NAME=value for each, then run until signalled.
- ``stubborn [FILE]``: ignore SIGTERM (only SIGKILL ends it); create FILE once it does.
- ``report``: on SIGTERM or SIGINT, print ``got <SIGNAME>`` and exit 0.
- ``tree``: start a grandchild in our process group and one in a session of its own, print
  ``tree <pid> <pid>`` once both run, then run until signalled.
- ``crash``: print to stdout and stderr, then an unfinished line, then exit 1.
- ``message``: send "hello from <service>" to the gproc parent through gproc messaging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def ready() -> None:
    service = os.environ.get("GPROC_SERVICE")
    print(f"ready {service} pid={os.getpid()} port={os.environ.get('PORT')}", flush=True)


def forever() -> None:
    while True:
        time.sleep(60)


def main() -> None:
    mode = sys.argv[1]
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if len(sys.argv) > 2:
            open(sys.argv[2], "w").close()
    if mode == "report":

        def report(signum: int, frame: object) -> None:
            print(f"got {signal.Signals(signum).name}", flush=True)
            sys.exit(0)

        signal.signal(signal.SIGTERM, report)
        signal.signal(signal.SIGINT, report)
    if mode == "tree":
        sleeper = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]
        same = subprocess.Popen(sleeper, stdout=subprocess.PIPE)
        alone = subprocess.Popen(sleeper, stdout=subprocess.PIPE, start_new_session=True)
        for child in (same, alone):
            assert child.stdout is not None
            child.stdout.readline()
        print(f"tree {same.pid} {alone.pid}", flush=True)
    ready()
    if mode == "exit":
        if len(sys.argv) > 3:
            while not os.path.exists(sys.argv[3]):  # a handshake with another service
                time.sleep(0.01)
        sys.exit(int(sys.argv[2]))
    if mode == "env":
        for name in sys.argv[2:]:
            print(f"{name}={os.environ.get(name)}", flush=True)
    if mode == "crash":
        print("about to fail", flush=True)
        print("Traceback: something broke", file=sys.stderr, flush=True)
        sys.stdout.write("unfinished line")
        sys.stdout.flush()
        sys.exit(1)
    if mode == "message":
        import gproc

        gproc.send(gproc.ppid(), f"hello from {os.environ['GPROC_SERVICE']}")
    forever()


if __name__ == "__main__":
    main()
