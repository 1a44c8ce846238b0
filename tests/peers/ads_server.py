#!/usr/bin/env python3
"""pyads's ADS test server as an independent ADS server for otdrift's tests: the collector's
framing of ReadDeviceInfo and ReadState is checked against answers we did not write.

    python ads_server.py

Serves one INT variable, GVL.Speed = 1500. Prints `listening 127.0.0.1:PORT` once the port
accepts connections; exits when stdin reaches EOF, so a test harness that dies takes the
server with it.

Needs: pyads 3.6.0 (pinned in .ci/peers.txt). Python 3.11.
"""

import sys

import pyads
from pyads.testserver import AdsTestServer, AdvancedHandler, PLCVariable


def main():
    handler = AdvancedHandler()
    handler.add_variable(PLCVariable("GVL.Speed", 1500, pyads.constants.ADST_INT16, "INT"))
    # Port 0: the operating system picks a free one, so parallel tests never collide.
    server = AdsTestServer(handler=handler, ip_address="127.0.0.1", port=0, logging=False)
    # The server thread only starts listening once it runs; listening here first means the
    # port accepts connections by the time we say so (a second listen() is harmless).
    server.server.listen(5)
    server.start()
    host, port = server.server.getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
