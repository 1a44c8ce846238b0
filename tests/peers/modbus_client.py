#!/usr/bin/env python3
"""An independent Modbus TCP client for otdrift's tests: reads a device with pymodbus's client
so that otdrift's simulator is checked against a third-party implementation.

Usage: modbus_client.py HOST PORT --unit 1 --holding START COUNT [--coils START COUNT]
                        [--input START COUNT] [--discrete START COUNT] [--device-id]

Prints one JSON object, e.g.
  {"holding": {"start": 0, "values": [500, 1300]}, "device_id": {"0x00": "Acme", ...}}
Exits 1 with a message on stderr on any exception response, timeout or connection error.

Needs: pymodbus 3.10 or later (the `device_id=` keyword; 3.9 and before said `slave=`), pinned
at 3.16.1 for the tests. Python 3.11.
"""
import argparse
import ipaddress
import json
import sys

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

# Protocol limits per request (MODBUS Application Protocol v1.1b3, 6.1-6.4): larger ranges
# are split so that a compliant device never has to refuse them.
MAX_REGISTERS = 125
MAX_BITS = 2000

TABLES = {
    # name: (client method, per-request limit)
    "holding": ("read_holding_registers", MAX_REGISTERS),
    "input": ("read_input_registers", MAX_REGISTERS),
    "coils": ("read_coils", MAX_BITS),
    "discrete": ("read_discrete_inputs", MAX_BITS),
}

# Stream read codes (01 basic, 02 regular, 03 extended). A device's conformity level (low 7
# bits) says which it supports; bit 0x80 only adds individual access, which a dump doesn't need.
STREAMS = (1, 2, 3)


# Exception codes (MODBUS Application Protocol v1.1b3, 7), named so a failing test says why.
EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def fail(message):
    sys.exit(f"modbus_client: {message}")


def check(response, what):
    if response.isError():
        code = getattr(response, "exception_code", None)
        fail(f"{what}: exception response, code {code} ({EXCEPTIONS.get(code, 'unknown')})")
    return response


def read_table(client, unit, name, start, count):
    method, limit = TABLES[name]
    values = []
    for offset in range(0, count, limit):
        n = min(limit, count - offset)
        response = check(
            getattr(client, method)(start + offset, count=n, device_id=unit),
            f"{name} read at {start + offset} count {n}",
        )
        # Bit responses are padded to a whole byte; keep only what was asked for.
        got = response.registers if name in ("holding", "input") else response.bits[:n]
        if len(got) != n:
            fail(f"{name} read at {start + offset}: asked {n} values, got {len(got)}")
        values.extend(int(v) if name in ("holding", "input") else bool(v) for v in got)
    return {"start": start, "values": values}


def text(value):
    # Objects are byte strings on the wire; the spec doesn't fix an encoding, UTF-8 is the
    # common case and backslash escapes keep anything else visible in the JSON.
    return value.decode("utf-8", "backslashreplace")


def read_device_id(client, unit):
    objects = {}
    level = None
    for code in STREAMS:
        if level is not None and code > level:
            break
        object_id, pages = 0, 0
        while True:
            response = check(
                client.read_device_information(read_code=code, object_id=object_id, device_id=unit),
                f"device identification read code {code} object 0x{object_id:02X}",
            )
            if level is None:
                level = response.conformity & 0x7F
            for oid, value in response.information.items():
                objects[f"0x{oid:02X}"] = (
                    [text(v) for v in value] if isinstance(value, list) else text(value)
                )
            pages += 1
            if not response.more_follows:
                break
            # A device that keeps saying "more" without moving on would loop forever.
            if response.next_object_id <= object_id or pages > 255:
                fail(f"device identification read code {code}: more_follows never ends")
            object_id = response.next_object_id
    return objects


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--holding", nargs=2, type=int, metavar=("START", "COUNT"), required=True)
    for name in ("coils", "input", "discrete"):
        parser.add_argument(f"--{name}", nargs=2, type=int, metavar=("START", "COUNT"))
    parser.add_argument("--device-id", action="store_true")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        fail("only loopback addresses are allowed")

    # retries=0: a test peer should report a silent device at once, not retry it.
    client = ModbusTcpClient(args.host, port=args.port, timeout=args.timeout, retries=0)
    if not client.connect():
        fail(f"cannot connect to {args.host}:{args.port}")
    out = {}
    try:
        for name in ("holding", "coils", "input", "discrete"):
            if (span := getattr(args, name)) is not None:
                start, count = span
                if count < 1 or start < 0 or start + count > 0x10000:
                    fail(f"{name} range {start} {count} is outside 0..65535")
                out[name] = read_table(client, args.unit, name, start, count)
        if args.device_id:
            out["device_id"] = read_device_id(client, args.unit)
    except ModbusException as exc:
        fail(str(exc))
    finally:
        client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
