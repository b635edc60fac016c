#!/usr/bin/env python3
"""Count the instructions a guest executes, from its PVH entry to its exit, under QEMU TCG.

    resources/guests/tests/count_insns.py build/guests/hello.elf [cmdline]

QEMU runs single-stepped (one instruction per translation block) with an execution log; every
logged block inside the guest image is one instruction. A rep-prefixed string instruction
logs once per iteration: "instructions" counts it once, "executions" counts every iteration.
QEMU's firmware (qboot) provides the MP table, so the numbers are close to, not equal to,
a boot under hearth.
"""
import collections
import os
import re
import subprocess
import sys
import tempfile


def symbols(elf):
    out = subprocess.run(["nm", "-n", elf], capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTW":
            syms.append((int(parts[0], 16), parts[2]))
    return syms


def image_range(elf):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    addr = {p[2]: int(p[0], 16) for p in (l.split() for l in out.splitlines()) if len(p) == 3}
    return addr["__image_start"], addr["__image_end"]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    elf, cmdline = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "x=1")
    lo, hi = image_range(elf)
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "exec.log")
        qemu = ["qemu-system-x86_64", "-M", "microvm,accel=tcg", "-singlestep", "-m", "128",
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", elf,
                "-append", cmdline, "-d", "exec,nochain", "-D", log]
        run = subprocess.run(["timeout", "60"] + qemu, capture_output=True, text=True)
        sys.stdout.write(run.stdout)
        pcs = []
        pattern = re.compile(r"Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
        with open(log) as f:
            for line in f:
                m = pattern.match(line)
                if m:
                    pc = int(m.group(1), 16)
                    if lo <= pc < hi:
                        pcs.append(pc)
    insns = [pc for i, pc in enumerate(pcs) if i == 0 or pc != pcs[i - 1]]
    syms = symbols(elf)

    def name(pc):
        best = "?"
        for addr, sym in syms:
            if addr > pc:
                break
            best = sym
        return best

    print(f"exit status: {run.returncode >> 1 if run.returncode & 1 else 'none'}")
    print(f"instructions: {len(insns)} (executions, rep iterations each: {len(pcs)})")
    for sym, n in collections.Counter(name(pc) for pc in insns).most_common():
        print(f"{n:8d}  {sym}")


if __name__ == "__main__":
    main()
