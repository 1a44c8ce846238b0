#!/usr/bin/env python3
"""pyads (Beckhoff's AdsLib underneath) as an independent ADS client for otdrift's tests: it
reads otdrift's TwinCAT simulator, so the simulator is checked against code we did not write.

    python ads_client.py HOST:PORT AMS_NET_ID

Reads identity, ADS state, four recipe values by name (pyads uses symbol info by name and the
plain sum-read 0xF080 for that), the whole symbol upload, and one value with a plain Read by
index group and offset. Prints one JSON object; any ADS error is an exception (exit 1).

Needs: pyads 3.6.0 (pinned in .ci/peers.txt). Python 3.11.
"""

import ipaddress
import json
import sys

import pyads

# The recipe the simulator's built-in filler declares (simulators/states/ads-filler.toml).
RECIPE = [
    "GVL_Recipe.FillVolume",
    "GVL_Recipe.BottlesPerMinute",
    "GVL_Recipe.Product",
    "GVL_Config.MaxSpeed",
]


def main():
    address, net_id = sys.argv[1], sys.argv[2]
    host = address.rsplit(":", 1)[0]
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("ads_client: only loopback addresses are allowed")
    # AdsLib takes "host:port" as the route's address, which lets it reach a simulator that
    # does not listen on 48898.
    plc = pyads.Connection(net_id, 851, address)
    plc.open()
    try:
        plc.set_timeout(3000)
        name, version = plc.read_device_info()
        ads_state, _ = plc.read_state()
        values = plc.read_list_by_name(RECIPE)
        symbols = plc.get_all_symbols()
        # A plain Read at the place the symbol info gives, typed by pyads, not by us.
        info = plc.get_symbol("GVL_Recipe.CapTorque")
        torque = plc.read(info.index_group, info.index_offset, pyads.PLCTYPE_LREAL)
    finally:
        plc.close()
    print(json.dumps({
        "name": name,
        "version": [version.version, version.revision, version.build],
        "ads_state": ads_state,
        "values": values,
        "torque": torque,
        "symbols": sorted(s.name for s in symbols),
    }))


if __name__ == "__main__":
    main()
