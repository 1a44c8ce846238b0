#!/usr/bin/env python3
"""Verifies an otdrift-signed JWS (an audit head, a key rotation statement) with PyJWT, a JWT
library that shares no code with otdrift, and the agent's published public key.

Usage: verify_jws.py TOKEN ed25519:<base64 public key>
Prints the verified claims as JSON; exits 1 when the signature or the token does not verify.
Needs: pip install pyjwt cryptography
"""
import base64
import json
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def main(token, key_text):
    if not key_text.startswith("ed25519:"):
        print("not an ed25519: key", file=sys.stderr)
        return 1
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_text[len("ed25519:"):]))
    try:
        # EdDSA only: a verifier that let the token choose its algorithm would be the hole.
        claims = jwt.decode(token, key, algorithms=["EdDSA"], options={"verify_aud": False})
    except jwt.PyJWTError as e:
        print("does not verify: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
