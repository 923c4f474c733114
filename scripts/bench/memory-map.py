#!/usr/bin/env python3
"""Where a running Vouch process's resident memory is: private vs shared, PSS, and which
libraries and which Swift modules of the vouch binary the resident pages belong to.

Usage: scripts/bench/memory-map.py PID [TOP]

The module attribution reads /proc/PID/pagemap (the "present" bit, readable for one's own
processes) for every page the binary maps, and names each resident page after the symbol
it starts in (nm), grouping Swift symbols by module. Pages with no symbol (the ELF dynamic
symbol table and relocations that the loader reads) are reported as "loader tables".
"""
import bisect
import collections
import re
import struct
import subprocess
import sys

PAGE = 4096


def smaps_totals(pid):
    totals = collections.Counter()
    per_file = collections.Counter()
    name = ""
    for line in open(f"/proc/{pid}/smaps"):
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = fields[5] if len(fields) > 5 else "[anonymous]"
        elif fields[0] in ("Rss:", "Pss:", "Private_Clean:", "Private_Dirty:", "Shared_Clean:", "Shared_Dirty:"):
            totals[fields[0][:-1]] += int(fields[1])
            if fields[0] == "Rss:":
                per_file[name] += int(fields[1])
    return totals, per_file


def module_of(symbol):
    swift = re.match(r"^\$s(\d+)([A-Za-z_]\w*)", symbol)
    if swift:
        return swift.group(2)[: int(swift.group(1))]
    for prefix in ("CNIOBoringSSL", "CCryptoBoringSSL", "sqlite3"):
        if prefix in symbol:
            return prefix
    if symbol.startswith("$ss") or symbol.startswith("$sS"):
        return "Swift (inlined)"
    return "C and runtime"


def binary_pages_by_module(pid, binary_name="vouch"):
    maps = [line.split() for line in open(f"/proc/{pid}/maps")]
    segments = [m for m in maps if len(m) > 5 and m[5].rsplit("/", 1)[-1] == binary_name]
    if not segments:
        return None, collections.Counter()
    path = segments[0][5]
    load_base = int(segments[0][0].split("-")[0], 16) - int(segments[0][2], 16)
    symbols = []
    nm = subprocess.run(["nm", "--defined-only", "-n", path], capture_output=True, text=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols.append((int(parts[0], 16), parts[2]))
    addresses = [address for address, _ in symbols]
    first_symbol = addresses[0] if addresses else 0
    counts = collections.Counter()
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for segment in segments:
            low, high = (int(x, 16) for x in segment[0].split("-"))
            for page in range(low, high, PAGE):
                pagemap.seek(page // PAGE * 8)
                if not (struct.unpack("Q", pagemap.read(8))[0] >> 63) & 1:
                    continue
                offset = page - load_base
                index = bisect.bisect_right(addresses, offset) - 1
                # The dynamic symbol table and relocations come before any symbol, or after
                # the linker's start-of-section marker that nm reports in their place.
                if index < 0 or offset < first_symbol or symbols[index][1] in ("__abi_tag",):
                    counts["loader tables"] += PAGE // 1024
                else:
                    counts[module_of(symbols[index][1])] += PAGE // 1024
    return path, counts


def main():
    pid = int(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    totals, per_file = smaps_totals(pid)
    private = totals["Private_Clean"] + totals["Private_Dirty"]
    shared = totals["Shared_Clean"] + totals["Shared_Dirty"]
    print(f"- RSS {totals['Rss'] / 1024:.1f} MB = {private / 1024:.1f} MB private to the process "
          f"+ {shared / 1024:.1f} MB of pages shared with other processes; "
          f"PSS (shared pages split among their users) {totals['Pss'] / 1024:.1f} MB")
    files = ", ".join(f"{name.rsplit('/', 1)[-1]} {kb / 1024:.1f}"
                      for name, kb in per_file.most_common(top) if kb >= 256)
    print(f"- resident by mapping (MB): {files}")
    path, modules = binary_pages_by_module(pid)
    if path:
        total = sum(modules.values())
        parts = ", ".join(f"{name} {kb / 1024:.1f}" for name, kb in modules.most_common(top))
        print(f"- resident pages of the vouch binary: {total / 1024:.1f} MB; by module (MB): {parts}")


if __name__ == "__main__":
    main()
