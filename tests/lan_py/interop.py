"""python-banyan 3.17 side of tests/lan_interop.rs.

Modes (ADDR PUB SUB are the backplane address and its publisher/subscriber ports):
  pub   ADDR PUB SUB TOPIC     publish "probe" until "go" arrives, then CASES on TOPIC
  sub   ADDR PUB SUB TOPIC     answer every "ping" with "pong", check CASES on TOPIC
                               strictly, print every "pre*" topic, exit on "done"
  multi SPEC TOPIC             BanyanBaseMulti: publish CASES[1] with BROADCAST every 20 ms
Every mode gives up after 60 s (SIGALRM).
"""
import signal
import struct
import sys

from python_banyan.banyan_base import BanyanBase

signal.alarm(60)

CASES = [
    {"value": 1},
    {"u7": 127, "u8": 200, "u16": 60000, "u32": 4000000000, "u64": 18446744073709551615},
    {"n5": -5, "i8": -100, "i16": -30000, "i32": -2000000000, "i64": -9223372036854775808},
    {"f": 1.5, "neg": -2.25, "tiny": 5e-324, "big": 1.7976931348623157e308},
    {"s": "h\u00e9llo \u2713", "empty": "", "s8": "x" * 40, "s16": "y" * 300, "s32": "z" * 70000},
    {"b": b"\x00\x01\xff", "b0": b"", "b16": bytes(range(256)) * 2, "b32": b"\xab" * 70000},
    {"nil": None, "t": True, "f": False},
    {"a": [1, "two", [3.0, None, False]], "e": [], "a16": list(range(20))},
    {"m": {"inner": {"deep": [{"k": 1}]}}, "em": {}, "m16": {str(i): i for i in range(20)}},
    [1, 2, 3],
    "top-level string",
    None,
]


def same(a, b):
    """Strict equality: types must match (True is not 1, 1 is not 1.0), order of keys too."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return a == b


def say(*args):
    print(*args, flush=True)


class Pub(BanyanBase):
    def __init__(self, addr, pub, sub, topic):
        self.topic = topic
        self.started = False
        super().__init__(back_plane_ip_address=addr, publisher_port=pub, subscriber_port=sub,
                         process_name="py-pub", loop_time=0.01, receive_loop_idle_addition=self.idle)
        self.set_subscriber_topic("go")
        say("READY")
        self.receive_loop()

    def idle(self):
        if not self.started:
            self.publish_payload({"probe": 1}, "probe")

    def incoming_message_processing(self, topic, payload):
        if topic == "go" and not self.started:
            self.started = True
            for case in CASES:
                self.publish_payload(case, self.topic)
            say("SENT", len(CASES))


class Sub(BanyanBase):
    def __init__(self, addr, pub, sub, topic):
        self.topic = topic
        self.index = 0
        self.ok = 0
        super().__init__(back_plane_ip_address=addr, publisher_port=pub, subscriber_port=sub,
                         process_name="py-sub", loop_time=0.001)
        for t in (topic, "ping", "pre", "done"):
            self.set_subscriber_topic(t)
        say("READY")
        self.receive_loop()

    def incoming_message_processing(self, topic, payload):
        if topic == "ping":
            # Answer every ping: the first pong may be published before this
            # component's publisher connection has its subscription from the
            # backplane (ZeroMQ's slow joiner), so the Rust side keeps pinging
            # until a pong arrives.
            self.publish_payload({"pong": 1}, "pong")
        elif topic == self.topic:
            want = CASES[self.index]
            if same(payload, want):
                self.ok += 1
                say("CASE", self.index, "OK")
            else:
                say("CASE", self.index, "MISMATCH got", repr(payload)[:200], "want", repr(want)[:200])
            self.index += 1
        elif topic.startswith("pre"):
            say("PREFIX", topic)
        elif topic == "done":
            say("DONE", self.ok, "of", len(CASES))
            self.clean_up()
            sys.exit(0)


def multi(spec, topic):
    import time
    from python_banyan.banyan_base_multi import BanyanBaseMulti

    m = BanyanBaseMulti(back_plane_csv_file=spec, process_name="py-multi", loop_time=0.01)
    say("READY")
    while True:
        m.publish_payload(CASES[1], "BROADCAST", topic)
        time.sleep(0.02)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "pub":
        Pub(*sys.argv[2:6])
    elif mode == "sub":
        Sub(*sys.argv[2:6])
    elif mode == "multi":
        multi(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)
