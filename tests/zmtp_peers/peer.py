"""ZMTP conformance peer over pyzmq: the line protocol of README.md."""
import sys

import zmq

TYPES = {"PUB": zmq.PUB, "SUB": zmq.SUB, "XPUB": zmq.XPUB, "XSUB": zmq.XSUB}


def unhex(s):
    return b"" if s == "-" else bytes.fromhex(s)


def tohex(b):
    return b.hex() if b else "-"


def main():
    ctx = zmq.Context()
    sockets = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if cmd == "version":
                reply = "version pyzmq %s libzmq %s" % (zmq.__version__, zmq.zmq_version())
            elif cmd == "socket":
                sid, kind, endpoint = args[:3]
                s = ctx.socket(TYPES[kind])
                s.setsockopt(zmq.LINGER, 0)
                if len(args) >= 5:
                    s.setsockopt(zmq.HEARTBEAT_IVL, int(args[3]))
                    s.setsockopt(zmq.HEARTBEAT_TTL, int(args[4]))
                s.connect(endpoint)
                sockets[sid] = s
                reply = "ok"
            elif cmd == "sub":
                sockets[args[0]].setsockopt(zmq.SUBSCRIBE, unhex(args[1]))
                reply = "ok"
            elif cmd == "unsub":
                sockets[args[0]].setsockopt(zmq.UNSUBSCRIBE, unhex(args[1]))
                reply = "ok"
            elif cmd == "send":
                sockets[args[0]].send_multipart([unhex(f) for f in args[1:]])
                reply = "ok"
            elif cmd == "recv":
                s = sockets[args[0]]
                if s.poll(int(args[1])):
                    reply = "msg " + " ".join(tohex(f) for f in s.recv_multipart())
                else:
                    reply = "timeout"
            elif cmd == "close":
                sockets.pop(args[0]).close(0)
                reply = "ok"
            else:
                reply = "error unknown command " + cmd
        except Exception as e:  # the driver reports, the test decides
            reply = "error %r" % (e,)
        print(reply, flush=True)
    for s in sockets.values():
        s.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
