"""Reference backplane: zmq.proxy(XSUB, XPUB) on two free ports of
127.0.0.1. Prints "ports PUBLISHER SUBSCRIBER" once bound. Optional
arguments: heartbeat interval and timeout in ms (libzmq's
ZMQ_HEARTBEAT_IVL / ZMQ_HEARTBEAT_TIMEOUT / ZMQ_HEARTBEAT_TTL on both
sockets), as the Rust backplane's heartbeat settings."""
import sys

import zmq

ctx = zmq.Context()
xsub = ctx.socket(zmq.XSUB)
xpub = ctx.socket(zmq.XPUB)
for s in (xsub, xpub):
    s.setsockopt(zmq.LINGER, 0)
    if len(sys.argv) >= 3:
        s.setsockopt(zmq.HEARTBEAT_IVL, int(sys.argv[1]))
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(sys.argv[2]))
        s.setsockopt(zmq.HEARTBEAT_TTL, int(sys.argv[2]))
pub_port = xsub.bind_to_random_port("tcp://127.0.0.1")
sub_port = xpub.bind_to_random_port("tcp://127.0.0.1")
print("ports %d %d" % (pub_port, sub_port), flush=True)
try:
    zmq.proxy(xsub, xpub)
except (KeyboardInterrupt, zmq.ContextTerminated):
    pass
