"""A receiving child for the messaging tests.

Usage: msg_receiver.py [QUEUE_SIZE]. Starts receiving, prints "ready", then serves messages of
the default group: a request is answered with "<sha256 hex> <length>" of its data; a message
"quit" ends the program; "die" kills it with SIGKILL on the spot.
"""

import hashlib
import os
import signal
import sys

import gproc

queue_size = int(sys.argv[1]) if len(sys.argv) > 1 else None
gproc.start_receiving(queue_size=queue_size)
print("ready", flush=True)
for message in gproc.messages():
    if message.is_request:
        digest = hashlib.sha256(message.data).hexdigest()
        message.reply(f"{digest} {len(message.data)}")
    elif message.data == b"quit":
        break
    elif message.data == b"die":
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        print(message.text, flush=True)
