#!/usr/bin/env python3
"""asyncua (an OPC UA client we did not write) reads otdrift's OPC UA simulator.

Usage: opcua_client.py URL [USER PASSWORD]

Prints one JSON document with what it read: the namespace array, BuildInfo fields, a server
limit, the browse names below Mixer.Setpoints and a few typed values. The Rust test compares
them with the simulator's state, so a simulator bug that otdrift's own collector shares (both
are built on async-opcua) shows up here.

Needs: asyncua (pinned at 2.1.0 in .ci/peers.txt). Python 3.11.
"""
import asyncio
import json
import sys

from asyncua import Client, ua

PLC_NAMESPACE = "urn:otdrift:sim:mixer-m2:program"


async def main(url, user="", password=""):
    client = Client(url=url, timeout=10)
    if user:
        client.set_user(user)
        client.set_password(password)
    async with client:
        namespaces = await client.get_namespace_array()
        idx = namespaces.index(PLC_NAMESPACE)
        out = {"namespaces": namespaces}
        for name, nid in [
            ("product_name", ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName),
            ("software_version", ua.ObjectIds.Server_ServerStatus_BuildInfo_SoftwareVersion),
            (
                "max_nodes_per_read",
                ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            ),
        ]:
            out[name] = await client.get_node(nid).read_value()
        folder = client.get_node(f"ns={idx};s=Mixer.Setpoints")
        # Browsing through asyncua's own client checks the simulator's continuation points
        # and reference filters against an implementation other than async-opcua's.
        names = [(await child.read_browse_name()).Name for child in await folder.get_children()]
        out["children"] = sorted(names)
        speed = client.get_node(f"ns={idx};s=Mixer.Setpoints.MixSpeed")
        out["speed"] = await speed.read_value()
        out["speed_type"] = (await speed.read_data_type_as_variant_type()).name
        out["ramp"] = await client.get_node(f"ns={idx};s=Mixer.Setpoints.RampProfile").read_value()
        out["recipe"] = await client.get_node(f"ns={idx};s=Mixer.Setpoints.RecipeName").read_value()
    print(json.dumps(out))


asyncio.run(main(*sys.argv[1:]))
