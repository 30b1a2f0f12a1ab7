# ruff: noqa
"""TCP connection to an outside address."""

# expect: error
import socket

socket.create_connection(("1.1.1.1", 443), timeout=2)
