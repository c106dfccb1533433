#!/usr/bin/env python3
"""guildhall-py-build: turns a Python module into a Guildhall plugin component.

    python3 sdk/python/build.py APP.py --world bot|moderator|indexer [-o OUT.wasm] [--wit DIR]

It runs componentize-py with every WASI import replaced by a trapping stub
(``--stub-wasi``), so the component imports exactly what its world offers: no files, no
sockets, no environment. CPython's interpreter is initialised at build time (the snapshot
is in the component), so an instance starts from there.

Then it writes ``language: Python`` into the component's producers section: the host gives
components that carry an interpreter the limits its operator set for that language.

Inside a component there is no ``time`` or ``os.urandom`` (they are WASI): use the host's
``clock.now_ms()``, and seed ``random`` from it (the build-time seed is the same in every
instance).
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORLDS = ("bot", "moderator", "indexer")


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_leb128(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def read_name(data: bytes, at: int) -> tuple[str, int]:
    length, at = read_leb128(data, at)
    return data[at : at + length].decode(), at + length


def name(text: str) -> bytes:
    raw = text.encode()
    return leb128(len(raw)) + raw


def with_language(component: bytes, language: str, version: str) -> bytes:
    """The component with `language` in the producers section of its outermost level
    (the section's other fields kept; one is added at the end if there is none)."""
    assert component[:4] == b"\0asm" and component[6:8] == b"\x01\x00", "not a component"
    at, sections = 8, []
    while at < len(component):
        start = at
        section_id = component[at]
        size, body = read_leb128(component, at + 1)
        at = body + size
        sections.append((section_id, start, body, at))
    fields: dict[str, list[tuple[str, str]]] = {}
    producers = None
    for section_id, start, body, end in sections:
        if section_id != 0:
            continue
        section_name, p = read_name(component, body)
        if section_name != "producers":
            continue
        producers = (start, end)
        count, p = read_leb128(component, p)
        for _ in range(count):
            field, p = read_name(component, p)
            values, p = read_leb128(component, p)
            fields[field] = []
            for _ in range(values):
                value_name, p = read_name(component, p)
                value_version, p = read_name(component, p)
                fields[field].append((value_name, value_version))
    fields["language"] = [(language, version)]
    payload = name("producers") + leb128(len(fields))
    for field, values in fields.items():
        payload += name(field) + leb128(len(values))
        for value_name, value_version in values:
            payload += name(value_name) + name(value_version)
    section = b"\x00" + leb128(len(payload)) + payload
    if producers is None:
        return component + section
    start, end = producers
    return component[:start] + section + component[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description="Build a Guildhall plugin component from a Python module.")
    parser.add_argument("app", help="the plugin's module, e.g. bot.py")
    parser.add_argument("--world", "-w", choices=WORLDS, required=True)
    parser.add_argument("--out", "-o", help="the component to write (default: APP.wasm)")
    parser.add_argument("--wit", default=os.path.join(HERE, "..", "..", "wit"))
    args = parser.parse_args()
    app_dir, app_file = os.path.split(os.path.abspath(args.app))
    module = os.path.splitext(app_file)[0]
    if module in WORLDS or module == "wit_world":
        print(f"name the module something else than {module!r} (it is a world's name)", file=sys.stderr)
        return 2
    out = args.out or module + ".wasm"
    started = time.monotonic()
    componentize_py = os.path.join(os.path.dirname(sys.executable), "componentize-py")
    if not os.path.exists(componentize_py):
        componentize_py = "componentize-py"
    command = [componentize_py, "-q", "-d", args.wit, "-w", args.world, "componentize", "--stub-wasi"]
    command += ["-p", app_dir, "-p", HERE, module, "-o", out]
    built = subprocess.run(command)
    if built.returncode != 0:
        return built.returncode
    with open(out, "rb") as f:
        component = f.read()
    with open(out, "wb") as f:
        f.write(with_language(component, "Python", ""))
    mib = len(component) / (1 << 20)
    print(f"built {out} ({args.world}, {mib:.1f} MiB) in {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(os.path.abspath(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
