#!/usr/bin/env python3
"""pycomm3 (an independent Logix client) reads the CIP simulator, so the simulator the
collector is tested against is checked against someone else's reading of the protocol.

    python cip_pycomm3.py HOST PORT

Prints one JSON object: the project name, the programs and tags pycomm3 found while
browsing, and the values of a few tags (scalars, a program-scoped array, a STRING, a UDT,
a UDT member inside an array). Exits non-zero naming the first tag pycomm3 could not read.
"""

import json
import sys

from pycomm3 import LogixDriver

host, port = sys.argv[1], sys.argv[2]
# pycomm3 browses the tag list and every template on open: the same services otdrift uses.
with LogixDriver(f"{host}:{port}") as plc:
    out = {
        "name": plc.name,
        "programs": sorted(plc.info.get("programs", {})),
        "tags": sorted(plc.tags),
    }
    # "{4}" reads four elements: pycomm3's own syntax for a whole array.
    for r in plc.read(
        "Oven_SP",
        "Line_Speed",
        "Recipe",
        "Program:Oven.Zone_Temp{4}",
        "Program:MainProgram.Operator_Note",
        "Zones[1].SP",
    ):
        if r.error:
            sys.exit(f"{r.tag}: {r.error}")
        out[r.tag] = r.value
    print(json.dumps(out, default=str))
