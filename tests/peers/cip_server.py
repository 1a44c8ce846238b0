#!/usr/bin/env python3
"""cpppo's EtherNet/IP (Logix) server as an independent peer for the CIP collector's tests.

    python cip_server.py --tags TAGS.json [--port 0]

TAGS.json maps tag names to {"type": "REAL", "value": 180.0} (optional "count" for arrays,
optional "error": a CIP general status every read of that tag answers instead of data).
An optional "identity" key holds {"vendor", "device_type", "product_code", "revision"
("20.11" or [20, 11]), "serial", "product_name", "status"}.

Other arguments go to cpppo's server as is (e.g. --size 100, --route-path 1/0, -S).

Prints `listening 127.0.0.1:PORT` once the port accepts connections; exits when stdin reaches
EOF, so a test harness that dies takes the server with it.

cpppo is GPL-3.0: a test-only dependency from PyPI (cpppo==5.2.5), never shipped.
"""

import argparse
import json
import logging
import os
import sys
import threading
import time

from cpppo.server.enip import device
from cpppo.server.enip import main as enip_main

# cpppo's own config keys for the Identity object (section [Identity] of its config).
IDENTITY_KEYS = {
    "vendor": "Vendor Number",
    "device_type": "Device Type",
    "product_code": "Product Code Number",
    "revision": "Product Revision",
    "serial": "Serial Number",
    "product_name": "Product Name",
    "status": "Status Word",
}


def identity_config(identity):
    config = {}
    for key, value in identity.items():
        if key not in IDENTITY_KEYS:
            sys.exit(f"unknown identity key {key!r}; known: {sorted(IDENTITY_KEYS)}")
        if key == "revision":
            major, minor = (value.split(".") if isinstance(value, str) else value)
            # Attribute 4 is an INT on the wire: major in the low byte, minor in the high.
            value = int(major) | int(minor) << 8
        config[IDENTITY_KEYS[key]] = str(value)
    return config


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", required=True, help="JSON file of tags (and optional identity)")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="cpppo's logging")
    # Anything else goes to cpppo as is: --size and --route-path make it refuse on purpose,
    # which the collector's error paths need. (Its --delay has no effect in cpppo 5.2.5.)
    args, cpppo_args = ap.parse_known_args()

    with open(args.tags, encoding="utf-8") as f:
        spec = json.load(f)
    identity = spec.pop("identity", {})
    argv = [
        "--address", f"127.0.0.1:{args.port}",
        # UDP would bind a second, different free port when --port is 0; the tests use TCP.
        "--no-udp",
        # A cpppo.cfg lying in the working directory or $HOME must not change the peer.
        "--no-config",
    ] + ["-v"] * args.verbose + cpppo_args
    for name, tag in spec.items():
        count = int(tag.get("count", 1))
        argv.append(f"{name}={tag['type'].upper()}[{count}]")

    # --no-config skips cpppo's file loading, not its loader: the Identity object reads this
    # section when the first request creates it.
    device.Object.config_loader.read_dict({"Identity": identity_config(identity)})

    # cpppo's entry point, in-process, so the tags' values can be set on its own Attributes
    # and the bound port read back from its control dict instead of scraped from its output.
    control = {"control": {}}
    server = threading.Thread(
        target=enip_main.main, kwargs={"argv": argv, "server": control}, daemon=True
    )
    server.start()
    deadline = time.monotonic() + 30
    while "address" not in control["control"]:
        if not server.is_alive() or time.monotonic() > deadline:
            sys.exit("cpppo's server did not start")
        time.sleep(0.02)

    # main() built every tag before binding; clients wait for our line, so none sees defaults.
    for name, tag in spec.items():
        entry = enip_main.tags[name]
        count = int(tag.get("count", 1))
        value = tag.get("value")
        if value is not None:
            values = value if isinstance(value, list) else [value]
            if len(values) != count:
                sys.exit(f"tag {name}: {len(values)} values for count {count}")
            # cpppo encodes with struct.pack: REAL/LREAL need floats, integer types ints.
            kind = float if tag["type"].upper() in ("REAL", "LREAL") else type(entry.attribute[0])
            entry.attribute[0:count] = [kind(v) for v in values]
        if tag.get("error"):
            entry.attribute.error = int(tag["error"])

    if not args.verbose:
        # cpppo logs every request it cannot serve (the tag list, unknown classes) at ERROR,
        # and the collector's tests send those on purpose: keep the test output readable.
        # -v brings its log back.
        logging.getLogger().setLevel(logging.CRITICAL)

    host, port = control["control"]["address"]
    print(f"listening {host}:{port}", flush=True)

    # Block until the harness closes our stdin (or dies), then stop.
    for _ in sys.stdin:
        pass
    control["control"]["done"] = True
    os._exit(0)  # cpppo's per-connection threads may sit in recv; don't wait for them.


if __name__ == "__main__":
    main()
