#!/usr/bin/env python3
"""Checks that firmware/run-qemu.sh writes only printable text to a terminal.

Runs `run-qemu.sh PORT ELF` (and `run-qemu.sh pty ELF`) with stdout and
stderr on a pseudo-terminal for a few seconds (the firmware logs its stack
high-water mark every second), stops QEMU, and fails when the terminal got
anything but printable text (UTF-8; tabs, newlines, carriage returns and
ANSI colour sequences allowed). Once with defmt-print hidden from PATH (the
frames must go to the file it names) and, when defmt-print is installed,
once with it (the terminal must show the decoded "up" line).

Usage: scripts/qemu-tty-check.py RUN_QEMU_SH ELF
"""

import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_on_tty(script, elf, mode, env, seconds=3.0):
    """Bytes the terminal received from `script mode elf` within `seconds`."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [script, mode, elf],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    out = bytearray()

    def drain(until):
        while time.monotonic() < until:
            r, _, _ = select.select([master], [], [], 0.1)
            if not r:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return True
            if not chunk:
                return True
            out.extend(chunk)
        return False

    try:
        drain(time.monotonic() + seconds)
    finally:
        # The script's pid is QEMU's (exec); its group also holds the filter.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        drain(time.monotonic() + 3)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(master)
    return bytes(out)


def printable(data):
    """None when `data` is printable text, else what is wrong."""
    try:
        text = ANSI.sub(b"", data).decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 at byte {e.start}: {data[max(0, e.start - 16):e.start + 16]!r}"
    for i, c in enumerate(text):
        if c in "\t\r\n" or c.isprintable():
            continue
        return f"unprintable {c!r} at {i}: {text[max(0, i - 20):i + 20]!r}"
    return None


def main():
    script, elf = sys.argv[1], sys.argv[2]
    failures = 0
    defmt_print = shutil.which("defmt-print")
    # PATH without defmt-print: a directory of links to what the script needs.
    hidden = tempfile.mkdtemp()
    for tool in ["qemu-system-arm", "cat", "mkdir", "dirname", "bash"]:
        path = shutil.which(tool)
        if path:
            os.symlink(path, os.path.join(hidden, tool))
    runs = [("no defmt-print", dict(os.environ, PATH=hidden))]
    if defmt_print:
        runs.append(("defmt-print", dict(os.environ)))
    else:
        print("qemu-tty-check: defmt-print not installed; the decoding path is not checked")
    for label, env in runs:
        env.pop("BANYAN_DEFMT_LOG", None)
        for mode in [str(free_port()), "pty"]:
            data = run_on_tty(script, elf, mode, env)
            what = f"run-qemu.sh {mode} ({label})"
            bad = printable(data)
            text = ANSI.sub(b"", data).decode("utf-8", "replace")
            if bad:
                print(f"FAIL {what}: the terminal got binary output: {bad}")
                failures += 1
                continue
            if mode == "pty" and "char device redirected to /dev/pts/" not in text:
                print(f"FAIL {what}: no pty line on the terminal: {text!r}")
                failures += 1
                continue
            if label == "no defmt-print":
                m = re.search(r"defmt log \(binary frames\) -> (\S+?);", text)
                if not m:
                    print(f"FAIL {what}: no note naming the defmt log file: {text!r}")
                    failures += 1
                    continue
                size = os.path.getsize(m.group(1)) if os.path.exists(m.group(1)) else 0
                if size == 0:
                    print(f"FAIL {what}: the defmt log file {m.group(1)} is empty")
                    failures += 1
                    continue
                os.unlink(m.group(1))
                print(f"ok   {what}: {len(data)} bytes of text; {size} bytes of frames in the log file")
            else:
                if "up, session" not in text:
                    print(f"FAIL {what}: no decoded firmware log line: {text!r}")
                    failures += 1
                    continue
                print(f"ok   {what}: {len(data)} bytes of decoded text")
    shutil.rmtree(hidden, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
