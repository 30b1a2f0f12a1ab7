# ruff: noqa
"""UDP datagram to a listener on 127.0.0.1 (started by the test)."""

# expect: error
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"exfiltrate", ("127.0.0.1", __UDP_PORT__))
