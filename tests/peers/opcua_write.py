#!/usr/bin/env python3
"""Changes one value on the asyncua peer server (opcua_server.py), as an engineer's tool would.

Usage: opcua_write.py URL NODE_ID DOUBLE

This writes to the *peer* server only, never to a simulator or a PLC: the collector test needs
a change made by someone else between two captures, and asyncua's server is only reachable
through OPC UA. Exits 0 once the server acknowledged the write.

Needs: asyncua (pinned at 2.1.0 in .ci/peers.txt). Python 3.11.
"""
import asyncio
import sys

from asyncua import Client, ua


async def main(url, node_id, value):
    async with Client(url=url, timeout=10) as client:
        node = client.get_node(node_id)
        await node.write_value(ua.Variant(float(value), ua.VariantType.Double))


asyncio.run(main(*sys.argv[1:]))
