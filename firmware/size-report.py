#!/usr/bin/env python3
"""Flash/RAM of a firmware ELF by section, and by crate from symbol sizes.

    python3 firmware/size-report.py ELF [ELF ...]

Needs arm-none-eabi-nm / arm-none-eabi-size (binutils-arm-none-eabi).
Two attributions:
- by symbol: the demangled path's first segment (for `<T as Trait>::f`, T's
  crate). With LTO much code is inlined into its caller (the board's `main`,
  the app's `App::poll`), so a crate's figure is the code that stayed out of
  line: a lower bound, not its full cost.
- by source: every .text halfword goes to the innermost inlined frame
  (`arm-none-eabi-addr2line -i`) whose file is not the Rust standard library,
  i.e. to the crate whose source produced it, inlined or not. Generic
  standard-library code (iterators, slices, Option) inlined into a crate's
  function counts for that crate. .rodata is not attributed this way.
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


def text_range(elf):
    out = subprocess.run(["arm-none-eabi-objdump", "-h", elf], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == ".text":
            return int(parts[3], 16), int(parts[2], 16)
    return 0, 0


def source_bucket(path):
    if path.startswith("/rustc/"):
        return None
    m = re.search(r"registry/src/[^/]+/([A-Za-z0-9_\-]+?)-\d+\.\d+\.\d+[^/]*/", path)
    if m:
        crate = m.group(1).replace("-", "_")
        if crate in CORE_DEPS:
            return f"core deps ({crate})"
        return f"dep ({crate})"
    m = re.search(r"/core/src/([A-Za-z0-9_]+)", path)
    if m:
        return f"banyan_core::{m.group(1)}"
    if "/firmware/app/" in path:
        return "app (banyan_firmware_app)"
    if "/firmware/boards/" in path:
        return "board"
    return None


def by_source(elf):
    """Attributes every .text halfword to the innermost inlined frame whose
    source file is not the Rust standard library (addr2line -i), so code
    inlined into a caller counts for the crate it was written in."""
    start, size = text_range(elf)
    addrs = "".join(f"0x{a:x}\n" for a in range(start, start + size, 2))
    out = subprocess.run(["arm-none-eabi-addr2line", "-a", "-i", "-e", elf], input=addrs,
                         check=True, capture_output=True, text=True).stdout
    totals = {}
    frames = None

    def flush():
        if frames is None:
            return
        b = None
        for f in frames:
            b = source_bucket(f)
            if b:
                break
        if b is None:
            b = "libcore + compiler_builtins" if any(f.startswith("/rustc/") for f in frames) \
                else "no line info (compiler_builtins, asm)"
        totals[b] = totals.get(b, 0) + 2

    for line in out.splitlines():
        if line.startswith("0x"):
            flush()
            frames = []
        else:
            frames.append(line)
    flush()
    return totals


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
        src = by_source(elf)
        print(".text by source crate, inlined code counted where it was written (bytes):")
        core_src = 0
        for k, v in sorted(src.items(), key=lambda kv: -kv[1]):
            print(f"  {v:7d}  {k}")
            if k.startswith("banyan_core") or k.startswith("core deps"):
                core_src += v
        print(f"  {core_src:7d}  = banyan-core + its deps (.text, by source)")
        if r:
            print("static RAM by crate (bytes): " + ", ".join(f"{k} {v}" for k, v in sorted(r.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
