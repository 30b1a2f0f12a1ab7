# ruff: noqa
"""Resolve a public host name."""

# expect: error
import socket

print(socket.getaddrinfo("example.com", 443))
