#!/usr/bin/env python3
"""A seed host started on a busy port must print one clean line and exit 1.

    python3 tests/php/busy_port.py -- COMMAND...

Binds a port first, runs COMMAND --listen 127.0.0.1:PORT --channel-listen
127.0.0.1:0, and expects exit status 1, nothing on stdout, and exactly one
line on stderr starting "groupcast: cannot listen on 127.0.0.1:PORT: Address
already in use" (no uncaught exception, no stack trace, no exit 255).
"""
import socket
import subprocess
import sys

command = sys.argv[1:]
if command[:1] == ["--"]:
    command = command[1:]
if not command:
    sys.exit(__doc__)
with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    addr = "127.0.0.1:%d" % busy.getsockname()[1]
    p = subprocess.run(command + ["--listen", addr, "--channel-listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60)
lines = p.stderr.strip().splitlines()
want = "groupcast: cannot listen on %s: Address already in use" % addr
if p.returncode == 1 and len(lines) == 1 and lines[0].startswith(want) and p.stdout == "":
    print("busy port: %s" % lines[0])
    sys.exit(0)
print("busy port: exit %d, stdout %r, stderr %r; expected exit 1 and one line %r"
      % (p.returncode, p.stdout, p.stderr, want), file=sys.stderr)
sys.exit(1)
