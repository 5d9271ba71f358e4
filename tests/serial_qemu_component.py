"""A python-banyan 3.17 component for tests/serial_qemu.rs.

Connects to the backplane, publishes `light_leds` and `run_motors` for the
QEMU firmware (behind serial-gateway) and waits for the firmware's
`{"report": "state", ...}` reports showing each command applied. Prints one
`OK ...` line per step and exits 0, or prints `FAIL ...` and exits 1.

usage: serial_qemu_component.py PUBLISHER_PORT SUBSCRIBER_PORT REPORT_TOPIC
"""
import sys
import time

import msgpack
import zmq
from python_banyan.banyan_base import BanyanBase


class Component(BanyanBase):
    def __init__(self, pub_port, sub_port, report_topic):
        super().__init__(back_plane_ip_address='127.0.0.1',
                         subscriber_port=str(sub_port),
                         publisher_port=str(pub_port),
                         process_name='serial-qemu-e2e', loop_time=0.01)
        self.report_topic = report_topic
        self.set_subscriber_topic(report_topic)
        self.poller = zmq.Poller()
        self.poller.register(self.subscriber, zmq.POLLIN)

    def next_message(self, deadline):
        """The next (topic, payload) before `deadline`, or None."""
        left = deadline - time.monotonic()
        if left <= 0 or not self.poller.poll(int(left * 1000) + 1):
            return None
        topic, raw = self.subscriber.recv_multipart()
        return topic.decode(), msgpack.unpackb(raw, raw=False)

    def wait_own_subscription(self):
        """Publishes probes on the report topic until one comes back: our
        subscription has then reached the backplane."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.publish_payload({'report': 'probe'}, self.report_topic)
            got = self.next_message(time.monotonic() + 0.2)
            while got is not None:
                if got[1].get('report') == 'probe':
                    return
                got = self.next_message(time.monotonic() + 0.05)
        fail('subscription never took effect')

    def command_until_state(self, topic, payload, check, what):
        """Publishes `payload` on `topic` (again every second) until a state
        report satisfies `check`."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.publish_payload(payload, topic)
            step_deadline = min(deadline, time.monotonic() + 1.0)
            while True:
                got = self.next_message(step_deadline)
                if got is None:
                    break
                _, report = got
                if report.get('report') == 'state' and check(report):
                    print('OK', what, report, flush=True)
                    return report
        fail('no state report showing ' + what)


def fail(why):
    print('FAIL', why, flush=True)
    sys.exit(1)


def main():
    pub_port, sub_port, report_topic = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    c = Component(pub_port, sub_port, report_topic)
    try:
        c.wait_own_subscription()
        print('OK subscribed', flush=True)
        c.command_until_state(
            'light_leds', {'status': True},
            lambda r: r['leds']['status'] == 1.0, 'status LED on')
        c.command_until_state(
            'run_motors', {'left': 0.5, 'right': -0.25},
            lambda r: r['motors']['left'] == 0.5 and r['motors']['right'] == -0.25,
            'motors left 0.5 right -0.25')
        c.command_until_state(
            'light_leds', {'status': False},
            lambda r: r['leds']['status'] == 0.0, 'status LED off')
    finally:
        c.clean_up()
    print('OK done', flush=True)


if __name__ == '__main__':
    main()
