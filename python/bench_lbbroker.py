"""A load-balancing broker in pyzmq, after the ZeroMQ Guide's "lbbroker"
pattern (ch. 3), written for banyan-rs's services benchmark
(gateways/services/examples/services-bench.rs): the baseline our broker is
compared with.

Frontend ROUTER: clients (REQ, or DEALER sending [b"", request]).
Backend ROUTER: workers (REQ) send b"READY" once, then [client, b"", reply]
for each [client, b"", request] they get. Workers wait in a FIFO queue (the
least recently used first); the frontend is only read while a worker is free.

Usage: bench_lbbroker.py  -> prints "ready FRONTEND_PORT BACKEND_PORT",
runs until killed.
"""

import collections
import sys

import zmq


def main():
    ctx = zmq.Context()
    frontend = ctx.socket(zmq.ROUTER)
    backend = ctx.socket(zmq.ROUTER)
    for s in (frontend, backend):
        s.setsockopt(zmq.SNDHWM, 100000)
        s.setsockopt(zmq.RCVHWM, 100000)
    fport = frontend.bind_to_random_port("tcp://127.0.0.1")
    bport = backend.bind_to_random_port("tcp://127.0.0.1")
    print("ready", fport, bport, flush=True)

    idle = collections.deque()
    both = zmq.Poller()
    both.register(backend, zmq.POLLIN)
    both.register(frontend, zmq.POLLIN)
    back_only = zmq.Poller()
    back_only.register(backend, zmq.POLLIN)

    while True:
        events = dict((both if idle else back_only).poll())
        if backend in events:
            while True:
                try:
                    frames = backend.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                # [worker, b"", READY] or [worker, b"", client, b"", reply]
                idle.append(frames[0])
                if len(frames) > 3:
                    frontend.send_multipart(frames[2:])
        if frontend in events:
            while idle:
                try:
                    frames = frontend.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                # [client, b"", request]
                backend.send_multipart([idle.popleft(), b""] + frames)


if __name__ == "__main__":
    sys.exit(main())
