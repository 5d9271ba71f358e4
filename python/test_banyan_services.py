"""Test driver for banyan_services.py and the devices, run by tests/services.rs
with the repo's .venv interpreter (pyzmq + msgpack). Every mode prints `ok ...`
lines and exits 0 on success; any failure raises (non-zero exit).

  worker ENDPOINT SERVICE NAME      serve SERVICE, echo {"echo": body, "worker": NAME}
  client ENDPOINT                   call rs_echo (a Rust worker), py_echo (a Python
                                    worker), an unknown service, async + listing
  queue FRONT BACK                  raw REQ clients -> queue device -> raw REP servers
  streamer FRONT BACK               raw PUSH -> streamer device -> raw PULL
  device ENDPOINT NAME              call a microcontroller's services NAME.info and
                                    NAME.state (the QEMU firmware behind banyan
                                    serial-gateway) and check the replies
  await ENDPOINT SERVICE TIMEOUT GO  print "ready", wait until the file GO exists,
                                    send one request, print "sent", wait for its
                                    answer: "answer reply VALUE", "answer error
                                    NAME DETAIL" or "answer timeout"
"""

import sys
import threading

import zmq

sys.path.insert(0, __import__("os").path.dirname(__file__))
import banyan_services as bs  # noqa: E402


def worker(endpoint, service, name):
    def echo(body):
        if isinstance(body, dict) and body.get("fail"):
            raise ValueError("asked to fail")
        return {"echo": body, "worker": name}

    w = bs.Worker(service, echo, endpoint, heartbeat=0.2)
    print("ready", flush=True)
    w.run()


def client(endpoint):
    c = bs.Client(endpoint)
    # A Rust worker and a Python worker, from Python.
    for service in ("rs_echo", "py_echo"):
        r = c.request(service, {"n": 1, "s": "x", "b": b"\x00\x01"}, timeout=5.0)
        assert r["echo"] == {"n": 1, "s": "x", "b": b"\x00\x01"}, r
        print("ok", service, r["worker"], flush=True)
    # Unknown service: an error at once, not a timeout.
    try:
        c.request("nobody_serves_this", {}, timeout=5.0)
        raise AssertionError("expected an error")
    except bs.ServiceError as e:
        assert e.name == "unknown_service", e
        print("ok unknown_service", flush=True)
    # Handler failure in the Python worker reaches a Python client.
    try:
        c.request("py_echo", {"fail": True}, timeout=5.0)
        raise AssertionError("expected an error")
    except bs.ServiceError as e:
        assert e.name == "worker_error" and "asked to fail" in e.detail, e
        print("ok worker_error", flush=True)
    # Asynchronous: many in flight on one socket, answers matched by id.
    ids = {}
    for i in range(200):
        service = "rs_echo" if i % 2 else "py_echo"
        ids[c.send(service, {"i": i}, timeout=10.0)] = i
    seen = 0
    while c.in_flight():
        got = c.poll(10.0)
        assert got is not None, "async answers missing"
        rid, value = got
        assert not isinstance(value, Exception), value
        assert value["echo"]["i"] == ids.pop(rid)
        seen += 1
    assert seen == 200 and not ids
    print("ok async", seen, flush=True)
    # Listing (like Majordomo's mmi.service).
    listing = c.request("banyan.services", {}, timeout=5.0)
    names = {s["service"]: s["workers"] for s in listing["services"]}
    assert names.get("rs_echo", 0) >= 1 and names.get("py_echo", 0) >= 1, names
    info = c.request("banyan.service", {"service": "py_echo"}, timeout=5.0)
    assert info["known"] and info["workers"] >= 1, info
    print("ok listing", sorted(names), flush=True)
    # A plain REQ socket works too (the broker keeps the delimiter).
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    import struct
    req.send_multipart([struct.pack(">4sBBIQ", b"BSC1", 1, 0, 5000, 77), b"rs_echo", bs.pack({"req": 1})])
    assert req.poll(5000), "REQ got no answer"
    h, body = req.recv_multipart()
    assert h[:5] == b"BSC1\x02" and struct.unpack(">Q", h[5:13])[0] == 77, h
    assert bs.unpack(body)["echo"] == {"req": 1}
    print("ok req-socket", flush=True)
    c.close()


def device(endpoint, name):
    c = bs.Client(endpoint)
    # info: the firmware's identity and counters.
    info = c.request(name + ".info", {}, timeout=10.0)
    assert info["report"] == "info", info
    assert info["name"] == name, info
    assert isinstance(info["version"], str) and info["version"], info
    assert isinstance(info["uptime_ms"], int) and info["uptime_ms"] >= 0, info
    for counter in ("uart_errors", "malformed", "link_downs"):
        assert isinstance(info[counter], int), (counter, info)
    print("ok info", info["name"], info["version"], "uptime_ms", info["uptime_ms"], flush=True)
    # state: the robot's state report, as published on from_NAME.
    state = c.request(name + ".state", {}, timeout=10.0)
    assert state["report"] == "state", state
    assert set(state["motors"]) >= {"left", "right"}, state
    assert all(isinstance(v, float) for v in state["motors"].values()), state
    assert isinstance(state["leds"], dict), state
    print("ok state motors", state["motors"], "leds", state["leds"], flush=True)
    # Both at once, answers matched by id; the device's uptime moves on.
    ids = {c.send(name + ".info", {}, timeout=10.0): "info",
           c.send(name + ".state", {}, timeout=10.0): "state"}
    while ids:
        got = c.poll(10.0)
        assert got is not None, "answers missing"
        rid, value = got
        assert not isinstance(value, Exception), value
        assert value["report"] == ids.pop(rid), value
        if value["report"] == "info":
            assert value["uptime_ms"] >= info["uptime_ms"], (value, info)
    print("ok async info+state", flush=True)
    # A service the device does not declare: an error at once.
    try:
        c.request(name + ".no_such_service", {}, timeout=10.0)
        raise AssertionError("expected an error")
    except bs.ServiceError as e:
        assert e.name == "unknown_service", e
        print("ok unknown_service", flush=True)
    c.close()


def await_answer(endpoint, service, timeout, go):
    import os
    import time
    c = bs.Client(endpoint)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
    rid = c.send(service, {}, timeout=float(timeout))
    print("sent", flush=True)
    got = None
    while got is None:
        got = c.poll(1.0)
    assert got[0] == rid, got
    value = got[1]
    if isinstance(value, bs.ServiceError):
        print("answer error", value.name, value.detail, flush=True)
    elif isinstance(value, bs.ServiceTimeout):
        print("answer timeout", flush=True)
    else:
        print("answer reply", value, flush=True)
    c.close()


def queue(front, back):
    ctx = zmq.Context.instance()
    stop = threading.Event()
    counts = {}

    def rep(name):
        s = ctx.socket(zmq.REP)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(back)
        while not stop.is_set():
            if s.poll(50):
                msg = s.recv()
                counts[name] = counts.get(name, 0) + 1
                s.send(msg + b"|" + name.encode())
        s.close()

    servers = [threading.Thread(target=rep, args=("rep%d" % i,)) for i in range(3)]
    for t in servers:
        t.start()
    clients = []
    for i in range(4):
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(front)
        clients.append(s)
    total = 0
    for n in range(100):
        for i, s in enumerate(clients):
            payload = b"c%d-%d" % (i, n)
            s.send(payload)
            assert s.poll(5000), "no reply through the queue"
            reply = s.recv()
            assert reply.startswith(payload + b"|rep"), reply
            total += 1
    stop.set()
    for t in servers:
        t.join()
    for s in clients:
        s.close()
    assert total == 400
    print("ok queue", total, "spread", sorted(counts.values()), flush=True)


def streamer(front, back):
    ctx = zmq.Context.instance()
    pulls = []
    for _ in range(2):
        s = ctx.socket(zmq.PULL)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(back)
        pulls.append(s)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(front)
    n = 10000
    for i in range(n):
        push.send(b"item %d" % i)
    got = set()
    per = [0, 0]
    poller = zmq.Poller()
    for s in pulls:
        poller.register(s, zmq.POLLIN)
    while len(got) < n:
        events = dict(poller.poll(5000))
        assert events, "items missing after the streamer: %d of %d" % (len(got), n)
        for i, s in enumerate(pulls):
            while s in events and s.poll(0):
                got.add(s.recv())
                per[i] += 1
    assert len(got) == n
    print("ok streamer", n, "spread", per, flush=True)
    push.close()
    for s in pulls:
        s.close()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    modes = {"worker": worker, "client": client, "queue": queue, "streamer": streamer, "device": device,
             "await": await_answer}
    modes[mode](*args)
