#!/usr/bin/env python3
"""An independent Modbus TCP server for otdrift's tests, built on pymodbus's own server so that
framing, exception responses and Read Device Identification (FC 43 / MEI 14) come from a
third-party implementation rather than from otdrift's simulator.

Usage: modbus_server.py --state STATE.json [--host 127.0.0.1] [--port 0] [--request-log FILE]

Prints exactly one line `listening HOST:PORT` on stdout once it accepts connections, then serves
until killed or until its stdin reaches EOF (so a test harness that dies takes it down: start it
with a pipe on stdin, not /dev/null).

What pymodbus 3.16.1 does that a test may meet: a request for another unit id gets exception
0x04 (unit_id 0 in the state answers every unit instead); FC 43 is answered for any unit id,
always with conformity 0x83; writes are accepted like any other request, so tests that must
see none read the request log.

Needs: pymodbus 3.13 or later (a SimDevice as the server's datastore; before that only
ModbusDeviceContext, and ModbusSlaveContext up to 3.9), pinned at 3.16.1 for the tests.
Python 3.11.
"""
import argparse
import asyncio
import ipaddress
import json
import sys

from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# Each table holds addresses 0..9999: wide enough for every map in the tests, small enough to
# build instantly, and a read past it gets pymodbus's own "illegal data address" answer.
TABLE_SIZE = 10000

# Basic and regular identity objects by their Modbus object id (MODBUS Application Protocol
# v1.1b3, 6.21).
IDENTITY_OBJECTS = {
    "vendor_name": 0x00,
    "product_code": 0x01,
    "revision": 0x02,
    "vendor_url": 0x03,
    "product_name": 0x04,
    "model_name": 0x05,
    "user_application_name": 0x06,
}


def table(state, name, convert):
    """A full-size table with the mapped addresses set; the rest stay 0/False."""
    values = [convert(0)] * TABLE_SIZE
    for key, value in state.get(name, {}).items():
        address = int(key)
        if not 0 <= address < TABLE_SIZE:
            sys.exit(f"modbus_server: {name} address {address} outside 0..{TABLE_SIZE - 1}")
        values[address] = convert(value)
    datatype = DataType.BITS if convert is bool else DataType.REGISTERS
    return [SimData(0, values=values, datatype=datatype)]


def register(value):
    value = int(value)
    if not 0 <= value <= 0xFFFF:
        sys.exit(f"modbus_server: register value {value} is not a 16-bit unsigned integer")
    return value


def identity(state):
    info = {}
    spec = state.get("identity") or {}
    for name, object_id in IDENTITY_OBJECTS.items():
        if spec.get(name):
            info[object_id] = str(spec[name])
    for key, value in (spec.get("extended") or {}).items():
        object_id = int(key, 0)
        if not 0x80 <= object_id <= 0xFF:
            sys.exit(f"modbus_server: extended identity object {key} outside 0x80..0xFF")
        info[object_id] = str(value)
    return ModbusDeviceIdentification(info=info)


class RequestLog:
    """Writes one {"fc": N} line per request, through pymodbus's trace hooks.

    trace_pdu sees every request pymodbus could decode. A frame it cannot decode (an
    unsupported function code) never becomes a PDU: pymodbus answers it with an exception PDU
    whose function code is 0x80, synchronously within the same receive callback, so the raw
    bytes remembered by trace_packet are that frame's and give its function code.
    """

    def __init__(self, path):
        self.file = open(path, "a", buffering=1, encoding="utf-8")
        self.last_received = b""

    def write(self, fc):
        self.file.write(json.dumps({"fc": fc}) + "\n")

    def trace_packet(self, sending, data):
        if not sending:
            self.last_received = data
        return data

    def trace_pdu(self, sending, pdu):
        if not sending:
            self.write(pdu.function_code)
        elif isinstance(pdu, ExceptionResponse) and pdu.function_code == 0x80:
            if len(self.last_received) > 7:  # MBAP header is 7 bytes, then the FC
                self.write(self.last_received[7])
        return pdu


async def serve(args, state):
    device = SimDevice(
        id=int(state.get("unit_id", 1)),
        # Separate tables, in pymodbus's order: coils, discrete inputs, holding, input.
        simdata=(
            table(state, "coils", bool),
            table(state, "discrete", bool),
            table(state, "holding", register),
            table(state, "input", register),
        ),
    )
    log = RequestLog(args.request_log) if args.request_log else None
    server = ModbusTcpServer(
        device,
        address=(args.host, args.port),
        identity=identity(state),
        trace_packet=log.trace_packet if log else None,
        trace_pdu=log.trace_pdu if log else None,
    )
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(f"listening {args.host}:{port}", flush=True)

    # Blocks in a worker thread until the harness closes our stdin (or dies).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    await server.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--request-log")
    args = parser.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        sys.exit("modbus_server: only loopback addresses are allowed")
    with open(args.state, encoding="utf-8") as f:
        state = json.load(f)
    asyncio.run(serve(args, state))


if __name__ == "__main__":
    main()
