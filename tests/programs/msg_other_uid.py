"""Connect to a gproc socket as another user (uid/gid 65534); print what happened.

Usage: msg_other_uid.py SOCKET_PATH full|fsuid
- full: drop real and effective ids with os.setgid/os.setuid, as an unprivileged user would be;
- fsuid: only the effective uid becomes 65534 (what SO_PEERCRED reports) while the file-system
  uid stays 0, so the socket can be reached and the receiver's own uid check is what refuses.
"""

import ctypes
import os
import socket
import sys

path, mode = sys.argv[1], sys.argv[2]
os.setgroups([])
os.setgid(65534)
if mode == "full":
    os.setuid(65534)
else:
    os.seteuid(65534)
    ctypes.CDLL(None, use_errno=True).setfsuid(0)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
try:
    sock.connect(path)
except PermissionError:
    print("permission denied")
    sys.exit(0)
try:
    data = sock.recv(100)
except ConnectionResetError:
    data = b""
print("closed without a word" if data == b"" else f"got {data!r}")
