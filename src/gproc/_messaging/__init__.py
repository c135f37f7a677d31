"""Messaging by pid: send and receive between processes over Unix sockets.

Small modules, one job each: ``protocol`` (the wire format, pure), ``runtime_dir`` (where sockets
live, who a pid is), ``queues`` (bounded per-group queues and their waiters), ``listener`` (the
receiving thread), ``sender`` (the sending operations), ``receiving`` (the receive API),
``message`` (what a receiver gets). See docs/messaging.md.
"""
