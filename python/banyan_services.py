"""banyan_services: call and serve banyan-rs services from Python.

Plain pyzmq + msgpack (the same packages Python Banyan uses); no other
dependency. The wire protocol is specified in docs/services.md.

Client::

    from banyan_services import Client, ServiceError, ServiceTimeout
    c = Client("tcp://127.0.0.1:43126")
    print(c.request("add", {"a": 1, "b": 2}, timeout=1.0))
    ids = [c.send("add", {"a": i, "b": i}) for i in range(100)]   # async
    while c.in_flight():
        done = c.poll(1.0)            # (id, value) or (id, exception) or None

Worker::

    from banyan_services import Worker
    def add(body):
        return body["a"] + body["b"]   # raise to answer a worker_error
    Worker("add", add, "tcp://127.0.0.1:43126").run()

The Python worker runs its handler in its own thread of control and does
not heartbeat while the handler runs (READY flag 0): the broker then gives
it until the request's deadline plus three heartbeats before it declares it
dead.
"""

import itertools
import struct
import time

import msgpack
import zmq

__all__ = [
    "Client",
    "Worker",
    "ServiceError",
    "ServiceTimeout",
    "DEFAULT_ENDPOINT",
    "DEFAULT_TIMEOUT",
    "ERROR_NAMES",
]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:43126"
DEFAULT_TIMEOUT = 2.5  # seconds

CLIENT = b"BSC1"
WORKER = b"BSW1"
# Client commands.
C_REQUEST, C_REPLY, C_ERROR = 0x01, 0x02, 0x03
# Worker commands.
W_READY, W_REPLY, W_FAIL, W_HEARTBEAT, W_DISCONNECT, W_REQUEST = 1, 2, 3, 4, 5, 6
FLAG_IDEMPOTENT = 0x01

ERROR_NAMES = {
    1: "unknown_service",
    2: "no_workers",
    3: "timeout",
    4: "malformed",
    5: "queue_full",
    6: "worker_lost",
    7: "worker_error",
    8: "unavailable",
}
TRANSIENT = {2, 5, 6, 8}


def pack(value):
    """Encodes a body like Python Banyan does."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(data):
    """Decodes a body like Python Banyan does."""
    return msgpack.unpackb(data, raw=False)


class ServiceError(Exception):
    """The broker answered with an error code instead of a reply."""

    def __init__(self, code, detail):
        self.code = code
        self.name = ERROR_NAMES.get(code, "error code %d" % code)
        self.detail = detail
        super().__init__("%s: %s" % (self.name, detail))


class ServiceTimeout(Exception):
    """No answer within the request's deadline."""


class Client:
    """A connection to the broker; requests are matched to answers by id."""

    def __init__(self, endpoint=DEFAULT_ENDPOINT, context=None):
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self._ids = itertools.count((int(time.time() * 1e6) & 0xFFFFFFFF) << 20 | 1)
        self._pending = {}  # wire id -> [deadline, service, body, timeout, idempotent, attempts left]
        self._done = []

    def close(self):
        self.socket.close()

    def in_flight(self):
        """Requests sent whose answer poll() has not returned yet."""
        return len(self._pending) + len(self._done)

    def _transmit(self, service, body, timeout, idempotent):
        wid = next(self._ids) & 0xFFFFFFFFFFFFFFFF
        ms = max(1, int(timeout * 1000))
        header = struct.pack(">4sBBIQ", CLIENT, C_REQUEST, FLAG_IDEMPOTENT if idempotent else 0, ms, wid)
        self.socket.send_multipart([header, service.encode("utf-8"), body])
        return wid

    def send(self, service, value, timeout=DEFAULT_TIMEOUT, idempotent=False, attempts=1):
        """Sends a request asynchronously; returns its id for poll()."""
        body = pack(value)
        attempts = max(1, attempts if idempotent else 1)
        per_attempt = timeout / attempts
        wid = self._transmit(service, body, per_attempt, idempotent)
        self._pending[wid] = [time.monotonic() + timeout, service, body, per_attempt,
                              idempotent, attempts - 1, time.monotonic() + per_attempt, wid]
        return wid

    def poll(self, timeout):
        """Waits up to `timeout` s for an answer: (id, value) or (id, exception), or None."""
        end = time.monotonic() + timeout
        while True:
            if self._done:
                return self._done.pop(0)
            self._expire()
            if self._done:
                continue
            now = time.monotonic()
            wake = min([end] + [p[6] for p in self._pending.values()])
            if now >= end:
                return None
            if self.socket.poll(max(0, int((wake - now) * 1000) + 1), zmq.POLLIN):
                while self.socket.poll(0, zmq.POLLIN):
                    self._on_answer(self.socket.recv_multipart())

    def request(self, service, value, timeout=DEFAULT_TIMEOUT, idempotent=False, attempts=1):
        """Blocking call: returns the reply value or raises ServiceError / ServiceTimeout."""
        wid = self.send(service, value, timeout, idempotent, attempts)
        stash = []
        try:
            while True:
                got = self.poll(timeout + 1.0)
                if got is None:
                    continue
                if got[0] == wid:
                    if isinstance(got[1], Exception):
                        raise got[1]
                    return got[1]
                stash.append(got)
        finally:
            self._done[:0] = stash

    def _retry(self, key, p):
        del self._pending[key]
        p[5] -= 1
        now = time.monotonic()
        per_attempt = min(p[3], max(0.001, p[0] - now))
        p[6] = now + per_attempt
        wid = self._transmit(p[1], p[2], per_attempt, p[4])
        self._pending[wid] = p
        # Answers to the earlier attempt are now ignored.

    def _expire(self):
        now = time.monotonic()
        for key, p in list(self._pending.items()):
            if now >= p[0]:
                del self._pending[key]
                self._done.append((p[7], ServiceTimeout("no answer from %r within the deadline" % p[1])))
            elif now >= p[6]:
                if p[4] and p[5] > 0:
                    self._retry(key, p)
                else:
                    p[6] = p[0]

    def _on_answer(self, frames):
        h = frames[0] if frames else b""
        if len(frames) != 2 or h[:4] != CLIENT or len(h) < 13:
            return  # not an answer: ignore (counted nowhere in this small client)
        cmd = h[4]
        (wid,) = struct.unpack(">Q", h[5:13])
        p = self._pending.get(wid)
        if p is None:
            return  # late answer
        if cmd == C_REPLY and len(h) == 13:
            del self._pending[wid]
            self._done.append((p[7], unpack(frames[1])))
        elif cmd == C_ERROR and len(h) == 14:
            code = h[13]
            if p[4] and p[5] > 0 and code in TRANSIENT and time.monotonic() < p[0]:
                time.sleep(0.05)
                self._retry(wid, p)
                return
            del self._pending[wid]
            self._done.append((p[7], ServiceError(code, frames[1].decode("utf-8", "replace"))))


class Worker:
    """Serves one service: calls `handler(body) -> value` for each request."""

    def __init__(self, service, handler, endpoint=DEFAULT_ENDPOINT, heartbeat=1.0,
                 liveness=3, reconnect_min=0.1, reconnect_max=5.0, context=None):
        self.service = service
        self.handler = handler
        self.endpoint = endpoint
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.context = context or zmq.Context.instance()
        self.socket = None
        self.stats = {"requests": 0, "replies": 0, "failures": 0, "registrations": 0, "reconnects": 0}

    def _connect(self):
        if self.socket is not None:
            self.socket.close()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(self.endpoint)
        hb_ms = max(1, int(self.heartbeat * 1000))
        # Flag 0: no heartbeats while the handler runs.
        self.socket.send_multipart([struct.pack(">4sBBI", WORKER, W_READY, 0, hb_ms),
                                    self.service.encode("utf-8")])
        self.stats["registrations"] += 1

    def run(self, stop=None):
        """Serves until `stop` (a threading.Event) is set; reconnects by itself."""
        backoff = self.reconnect_min
        self._connect()
        broker_expiry = time.monotonic() + self.heartbeat * self.liveness
        next_hb = time.monotonic() + self.heartbeat
        try:
            while stop is None or not stop.is_set():
                now = time.monotonic()
                if now >= broker_expiry:
                    self.stats["reconnects"] += 1
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.reconnect_max)
                    self._connect()
                    broker_expiry = time.monotonic() + self.heartbeat * self.liveness
                    continue
                if now >= next_hb:
                    self.socket.send(struct.pack(">4sB", WORKER, W_HEARTBEAT))
                    next_hb = now + self.heartbeat
                wait = min(next_hb, broker_expiry, now + 0.1) - now
                if not self.socket.poll(max(1, int(wait * 1000)), zmq.POLLIN):
                    continue
                frames = self.socket.recv_multipart()
                broker_expiry = time.monotonic() + self.heartbeat * self.liveness
                backoff = self.reconnect_min
                h = frames[0]
                if h[:4] != WORKER or len(h) < 5:
                    continue
                cmd = h[4]
                if cmd == W_DISCONNECT:
                    self.stats["reconnects"] += 1
                    time.sleep(self.reconnect_min)
                    self._connect()
                elif cmd == W_REQUEST and len(h) == 17 and len(frames) == 2:
                    token = h[5:13]
                    self.stats["requests"] += 1
                    try:
                        reply = pack(self.handler(unpack(frames[1])))
                        self.socket.send_multipart([struct.pack(">4sB", WORKER, W_REPLY) + token, reply])
                        self.stats["replies"] += 1
                    except Exception as e:  # the client gets a worker_error
                        self.socket.send_multipart([struct.pack(">4sB", WORKER, W_FAIL) + token,
                                                    str(e).encode("utf-8")])
                        self.stats["failures"] += 1
                    next_hb = time.monotonic() + self.heartbeat
        finally:
            if self.socket is not None:
                self.socket.send(struct.pack(">4sB", WORKER, W_DISCONNECT), zmq.NOBLOCK)
                self.socket.close(linger=100)
                self.socket = None
