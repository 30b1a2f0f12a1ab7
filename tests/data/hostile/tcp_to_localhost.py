# ruff: noqa
"""TCP connection to a listener on 127.0.0.1 (started by the test)."""

# expect: error
import socket

s = socket.create_connection(("127.0.0.1", __TCP_PORT__), timeout=2)
s.sendall(b"exfiltrate")
