#!/usr/bin/env python3
"""pylogix (a second independent Logix client) reads the CIP simulator: a different
implementation of browsing, reading and the wall clock than pycomm3's.

    python cip_pylogix.py HOST PORT

Prints one JSON object: the tag and program lists pylogix browsed, a few values, an array
read by element count, and the status of its wall-clock read. Exits non-zero naming the
first request pylogix could not complete.
"""

import json
import sys

from pylogix import PLC

host, port = sys.argv[1], int(sys.argv[2])
# slot=0: the simulator's controller sits in slot 0, like the collector's default route.
with PLC(host, slot=0, port=port) as comm:
    out = {}
    tags = comm.GetTagList(True)
    if tags.Status != "Success":
        sys.exit("GetTagList: " + tags.Status)
    out["tags"] = sorted(t.TagName for t in tags.Value)
    out["programs"] = sorted(comm.GetProgramsList().Value or [])
    for r in comm.Read(
        ["Oven_SP", "Line_Speed", "Program:Oven.Ramp_Rate", "Program:MainProgram.Operator_Note"]
    ):
        if r.Status != "Success":
            sys.exit(f"{r.TagName}: {r.Status}")
        out[r.TagName] = r.Value
    zone = comm.Read("Program:Oven.Zone_Temp[0]", 4)
    if zone.Status != "Success":
        sys.exit("Zone_Temp: " + zone.Status)
    out["zone"] = zone.Value
    # Only the status: the clock moves, and the collector keeps it out of the digest anyway.
    out["time"] = comm.GetPLCTime().Status
    print(json.dumps(out, default=str))
