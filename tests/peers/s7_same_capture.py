#!/usr/bin/env python3
"""python-snap7 reads what one otdrift S7 capture reads, so the two costs can be compared.

    python s7_same_capture.py HOST PORT DB:START:SIZE...

Connects (rack 0, slot 2), reads SZL 0x0011, 0x001C, 0x0232 index 4 and 0x0424, the block
counts, the blocks of each type (OB, FB, FC, DB, SDB), the block info of every block listed,
and the given DB ranges with read_multi_vars (python-snap7 packs them into as few Read Var
requests as the PDU allows), then disconnects. Prints one JSON document with the blocks it
saw and the bytes it read, for the test to check it read the same as otdrift; the simulator's
request log counts the requests. Nothing here writes.

python-snap7 is MIT-licensed: a test-only dependency from PyPI, never shipped.
"""

import json
import sys

import snap7
from snap7.type import Area, Block


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    ranges = [tuple(int(x) for x in arg.split(":")) for arg in sys.argv[3:]]
    c = snap7.client.Client()
    c.connect(host, 0, 2, tcp_port=port)
    for szl, index in [(0x0011, 0), (0x001C, 0), (0x0232, 4), (0x0424, 0)]:
        c.read_szl(szl, index)
    c.list_blocks()
    blocks = []
    for block in [Block.OB, Block.FB, Block.FC, Block.DB, Block.SDB]:
        for number in c.list_blocks_of_type(block, 1024):
            c.get_block_info(block, number)
            blocks.append(f"{block.name}{number}")
    items = [{"area": Area.DB, "db_number": db, "start": start, "size": size} for db, start, size in ranges]
    _, data = c.read_multi_vars(items)
    c.disconnect()
    print(json.dumps({"blocks": blocks, "bytes": [len(d) for d in data]}))


if __name__ == "__main__":
    main()
