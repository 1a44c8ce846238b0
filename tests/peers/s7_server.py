#!/usr/bin/env python3
"""python-snap7's pure-Python S7 server as an independent peer for the S7 collector's tests.

    python s7_server.py [--standard-szl]

Serves DB7 (64 bytes: 0, 1, ..., 63) on 127.0.0.1 at a free port. Prints
`listening 127.0.0.1:PORT` once the port accepts connections; exits when stdin reaches EOF,
so a test harness that dies takes the server with it.

Why a second mode: python-snap7 (3.3.0) answers SZL 0x001C with a list header whose record
length is 0, followed by 206 bytes. Under the field-truth rule the collector refuses such an
answer as malformed, and the plain mode proves that against an implementation we did not
write. `--standard-szl` replaces only that one answer with Siemens-shaped records (an index
word and 32 bytes of text each), so that everything after identity (Read Var, block list and
block info, the framing) is still checked against python-snap7's own code.

python-snap7 is MIT-licensed: a test-only dependency from PyPI, never shipped.
"""

import argparse
import socket
import struct
import sys
import time

from snap7.server import Server
from snap7.type import SrvArea


class StandardSzlServer(Server):
    """python-snap7's server with SZL 0x001C answered in the standard record layout."""

    COMPONENTS = {
        1: b"SNAP7-SERVER",
        2: b"CPU 315-2 PN/DP",
        5: b"S C-C2UR28922012",
    }

    def _get_szl_data(self, szl_id, szl_index):
        if szl_id != 0x001C:
            return super()._get_szl_data(szl_id, szl_index)
        records = b"".join(
            struct.pack(">H", index) + text.ljust(32, b"\x00")
            for index, text in sorted(self.COMPONENTS.items())
        )
        return struct.pack(">HH", 34, len(self.COMPONENTS)) + records


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--standard-szl",
        action="store_true",
        help="answer SZL 0x001C with standard 34-byte records",
    )
    args = ap.parse_args()
    port = free_port()
    server = (StandardSzlServer if args.standard_szl else Server)(log=False)
    db = bytearray(range(64))
    server.register_area(SrvArea.DB, 7, db)
    server.start_to("127.0.0.1", tcp_port=port)
    # The server thread binds asynchronously: say "listening" only once it accepts.
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"python-snap7's server did not start on port {port}")
            time.sleep(0.05)
    print(f"listening 127.0.0.1:{port}", flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
