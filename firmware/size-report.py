#!/usr/bin/env python3
"""Flash/RAM of a firmware ELF by section, and by crate from symbol sizes.

    python3 firmware/size-report.py ELF [ELF ...]

Needs arm-none-eabi-nm / arm-none-eabi-size (binutils-arm-none-eabi).
Symbol attribution is by the demangled path's first segment (for
`<T as Trait>::f`, T's crate). With LTO much code is inlined into its caller
(the board's `main`, the app's `App::poll`), so a crate's figure is the code
that stayed out of line: a lower bound, not its full cost.
"""
import re
import subprocess
import sys

CORE_DEPS = {"cobs", "crc", "crc_catalog", "heapless", "ser_write_msgpack", "ser_write", "serde"}


def sections(elf):
    out = subprocess.run(["arm-none-eabi-size", "-A", elf], check=True,
                         capture_output=True, text=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("."):
            sizes[parts[0]] = int(parts[1])
    return sizes


def crate_of(name):
    n = name
    while n.startswith("<"):
        n = n[1:]
    n = n.lstrip("&*").replace("mut ", "").replace("dyn ", "")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(::([A-Za-z_][A-Za-z0-9_]*))?", n)
    if not m:
        return "other", None
    return m.group(1), m.group(3)


def bucket(name):
    if name.startswith(".L"):
        return "anonymous constants (.rodata)"
    crate, module = crate_of(name)
    if crate == "banyan_core":
        return f"banyan_core::{module}"
    if crate in CORE_DEPS:
        return f"core deps ({crate})"
    if crate.startswith("banyan_firmware_app"):
        return "app (banyan_firmware_app)"
    if crate.startswith("banyan_firmware"):
        return "board"
    if crate in ("core", "compiler_builtins") or name.startswith("__aeabi") or name.startswith("__"):
        return "libcore + compiler_builtins"
    if crate.startswith("defmt") or name.startswith("_defmt"):
        return "defmt"
    if crate in ("rp2040_hal", "rp2040_pac", "cortex_m", "cortex_m_rt", "cortex_m_semihosting",
                 "critical_section", "embedded_hal", "embedded_io", "rp2040_boot2", "fugit"):
        return f"hal/rt ({crate})"
    return f"other ({crate})"


def symbols(elf):
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--size-sort", "-C", elf], check=True,
                         capture_output=True, text=True).stdout
    flash, ram = {}, {}
    for line in out.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) < 4:
            continue
        _, size, kind, name = parts
        size = int(size, 16)
        target = ram if kind.lower() in "bd" else flash
        b = bucket(name)
        target[b] = target.get(b, 0) + size
    return flash, ram


def main():
    for elf in sys.argv[1:]:
        s = sections(elf)
        flash = sum(s.get(k, 0) for k in (".vector_table", ".boot2", ".text", ".rodata", ".data"))
        ram = sum(s.get(k, 0) for k in (".data", ".bss", ".uninit"))
        print(f"== {elf}")
        print(f"flash {flash} B ({flash / 1024:.1f} KiB): " + ", ".join(
            f"{k} {s[k]}" for k in (".vector_table", ".boot2", ".text", ".rodata", ".data") if k in s))
        print(f"static RAM {ram} B ({ram / 1024:.1f} KiB): " + ", ".join(
            f"{k} {s[k]}" for k in (".data", ".bss", ".uninit") if k in s))
        f, r = symbols(elf)
        print("out-of-line flash by crate (bytes):")
        core_total = 0
        for k, v in sorted(f.items(), key=lambda kv: -kv[1]):
            print(f"  {v:7d}  {k}")
            if k.startswith("banyan_core") or k.startswith("core deps"):
                core_total += v
        print(f"  {core_total:7d}  = banyan-core + its deps (out of line)")
        if r:
            print("static RAM by crate (bytes): " + ", ".join(f"{k} {v}" for k, v in sorted(r.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
