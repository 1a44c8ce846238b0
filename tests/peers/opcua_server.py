#!/usr/bin/env python3
"""An OPC UA server we did not write (asyncua's), for otdrift's collector to capture.

Usage: opcua_server.py PORT

Serves opc.tcp://127.0.0.1:PORT/peer/ with security None, a namespace urn:peer:plant and a
Recipe folder of five typed variables (Speed is writable, so a test can change it through
opcua_write.py and expect exactly that drift). Prints `listening 127.0.0.1:PORT` once it
accepts connections, then serves until its stdin reaches EOF (a test harness that dies takes
it down).

The port is chosen by the caller: asyncua reports no OS-assigned port before it serves.

Needs: asyncua (pinned at 2.1.0 in .ci/peers.txt). Python 3.11.
"""
import asyncio
import sys

from asyncua import Server, ua


async def main(port):
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/peer/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:peer:plant")
    recipe = await server.nodes.objects.add_folder(ua.NodeId("Recipe", idx), "Recipe")
    speed = await recipe.add_variable(ua.NodeId("Recipe.Speed", idx), "Speed", 72.5)
    await speed.set_writable()
    await recipe.add_variable(
        ua.NodeId("Recipe.Count", idx), "Count", ua.Variant(12, ua.VariantType.UInt32)
    )
    await recipe.add_variable(ua.NodeId("Recipe.Name", idx), "Name", "B12")
    await recipe.add_variable(ua.NodeId("Recipe.Enabled", idx), "Enabled", True)
    await recipe.add_variable(
        ua.NodeId("Recipe.Profile", idx), "Profile", ua.Variant([1, 2, 3], ua.VariantType.Int16)
    )
    async with server:
        print(f"listening 127.0.0.1:{port}", flush=True)
        # stdin EOF is the stop signal; reading it in a thread keeps the server's loop free.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main(int(sys.argv[1])))
