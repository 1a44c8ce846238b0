#!/usr/bin/env python3
"""python-snap7's pure-Python S7 client as an independent peer for the S7 simulator.

    python s7_client.py HOST PORT

Reads what the collector reads (a DB, the identity SZLs, the block list, a block's info and
its upload) through a client we did not write, and prints one line per answer for the test to
check. Nothing here writes: the simulator's request log must show zero writes afterwards.
Exits non-zero (with python-snap7's own exception) when any of it fails.

python-snap7 is MIT-licensed: a test-only dependency from PyPI, never shipped.
"""

import sys

import snap7


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    c = snap7.client.Client()
    c.connect(host, 0, 2, tcp_port=port)
    data = c.db_read(1, 0, 16)
    # The demo recipe's REAL at byte 4 starts 0x42 0x91: the same byte the collector checks.
    assert data[5] == 0x91, list(data)
    order = c.get_order_code()
    print("order", order.OrderCode.decode(), "V%d.%d.%d" % (order.V1, order.V2, order.V3))
    info = c.get_cpu_info()
    print("cpu", info.ModuleTypeName, info.SerialNumber, info.ASName)
    blocks = c.list_blocks()
    print("blocks", blocks.OBCount, blocks.FBCount, blocks.FCCount, blocks.DBCount)
    print("obs", list(c.list_blocks_of_type(snap7.type.Block.OB, 16)))
    bi = c.get_block_info(snap7.type.Block.FB, 1)
    print("fb1", bi.MC7Size, bi.CheckSum)
    image, size = c.full_upload(snap7.type.Block.FB, 1)
    print("upload", size)
    c.disconnect()


if __name__ == "__main__":
    main()
