"""python-banyan 3.17 side of scripts/bench-lan.sh (same scenarios as banyan-bench).

  sub         ADDR PUB SUB COUNT LOOP_TIME   count "bench" messages; stop 3 s after the last
  pub         ADDR PUB SUB COUNT             publish COUNT {"value": i} on "bench"
  echo_server ADDR PUB SUB LOOP_TIME         reply to "echo" with "reply"
  echo_client ADDR PUB SUB COUNT LOOP_TIME   COUNT round trips (after 10 warm-up ones)
Times are time.time() so that two processes can be compared.
"""
import signal
import statistics
import sys
import time

from python_banyan.banyan_base import BanyanBase

signal.alarm(600)


def say(*a):
    print(*a, flush=True)


class Sub(BanyanBase):
    def __init__(self, addr, pub, sub, count, loop_time):
        self.count = int(count)
        self.received = 0
        self.last = None
        super().__init__(back_plane_ip_address=addr, publisher_port=pub, subscriber_port=sub,
                         process_name="py-bench-sub", loop_time=float(loop_time),
                         receive_loop_idle_addition=self.idle)
        self.set_subscriber_topic("bench")
        say("READY")
        self.receive_loop()

    def idle(self):
        if self.last is not None and time.time() - self.last > 3:
            self.done()

    def done(self):
        say("RECEIVED", self.received, "LAST", repr(self.last))
        self.clean_up()
        sys.exit(0)

    def incoming_message_processing(self, topic, payload):
        self.received += 1
        self.last = time.time()
        if self.received == self.count:
            self.done()


def pub(addr, p, s, count):
    b = BanyanBase(back_plane_ip_address=addr, publisher_port=p, subscriber_port=s,
                   process_name="py-bench-pub")
    start = time.time()
    for i in range(int(count)):
        b.publish_payload({"value": i}, "bench")
    say("SENT", count, "START", repr(start), "SECONDS", time.time() - start)
    time.sleep(1)
    b.clean_up()


class EchoServer(BanyanBase):
    def __init__(self, addr, p, s, loop_time):
        super().__init__(back_plane_ip_address=addr, publisher_port=p, subscriber_port=s,
                         process_name="py-echo-server", loop_time=float(loop_time))
        self.set_subscriber_topic("echo")
        say("READY")
        self.receive_loop()

    def incoming_message_processing(self, topic, payload):
        self.publish_payload(payload, "reply")


class EchoClient(BanyanBase):
    def __init__(self, addr, p, s, count, loop_time):
        self.count = int(count) + 10
        self.rtts = []
        super().__init__(back_plane_ip_address=addr, publisher_port=p, subscriber_port=s,
                         process_name="py-echo-client", loop_time=float(loop_time),
                         receive_loop_idle_addition=self.idle)
        self.set_subscriber_topic("reply")
        time.sleep(0.5)
        self.n = 0
        self.sent_at = time.perf_counter()
        self.publish_payload({"message_number": self.n}, "echo")
        self.receive_loop()

    def idle(self):
        # The first message can be lost to the slow joiner: resend it.
        if self.n == 0 and time.perf_counter() - self.sent_at > 1:
            self.sent_at = time.perf_counter()
            self.publish_payload({"message_number": 0}, "echo")

    def incoming_message_processing(self, topic, payload):
        if payload["message_number"] != self.n:
            return
        rtt = time.perf_counter() - self.sent_at
        if self.n >= 10:
            self.rtts.append(rtt)
        self.n += 1
        if self.n == self.count:
            r = sorted(self.rtts)
            say("RTT median_us", statistics.median(r) * 1e6,
                "p99_us", r[min(len(r) - 1, int(len(r) * 0.99))] * 1e6, "n", len(r))
            self.clean_up()
            sys.exit(0)
        self.sent_at = time.perf_counter()
        self.publish_payload({"message_number": self.n}, "echo")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"sub": Sub, "pub": pub, "echo_server": EchoServer, "echo_client": EchoClient}[mode](*args)
