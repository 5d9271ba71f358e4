"""Runs python-banyan 3.17's backplane, unmodified, on the loopback address.

Python Banyan's backplane binds only the address it guesses by "connecting" a
UDP socket to 8.8.8.8, falling back to 127.0.0.1 when that fails. Tests and
benchmarks must only use loopback, so this wrapper makes that one probe fail
(no packet is sent either way) and lets Banyan's own fallback pick 127.0.0.1.

Usage: python py_backplane.py -p PUBLISHER_PORT -s SUBSCRIBER_PORT [...]
"""
import runpy
import socket
import sys

_connect = socket.socket.connect


def _no_route_probe(self, address):
    if isinstance(address, tuple) and address and address[0] == "8.8.8.8":
        raise OSError("banyan-rs tests: no route probe; use loopback")
    return _connect(self, address)


socket.socket.connect = _no_route_probe
sys.argv[0] = "backplane"
runpy.run_module("python_banyan.backplane.backplane", run_name="__main__")
