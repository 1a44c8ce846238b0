#!/usr/bin/env python3
"""An independent check of an otdrift evidence pack, written from docs/evidence-pack.md and the
canonical-encoding documentation (core/src/encoding.rs) without reusing otdrift's code.

Checks: the document is strict JSON (no member name twice in one object); the agent's Ed25519
signature over the canonical JSON of `pack`, made by the agent key the auditor pinned (the key
inside the pack proves nothing on its own); every embedded snapshot's BLAKE3 digest; every
capture's class digests and change signature, recomputed by re-encoding the snapshot's items
per class (the change signature: classes program and setpoint); every
approval token's Ed25519 signature with the approver key.

Usage: verify_evidence.py evidence.json AGENT_KEY   (AGENT_KEY: ed25519:..., the pinned key;
exit 0 when everything checks, 1 otherwise)
Needs: pip install blake3 cryptography
"""
import base64
import json
import struct
import sys

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAGIC = b"OTDRIFT\x00"


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def public_key(text):
    assert text.startswith("ed25519:"), text
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text[len("ed25519:"):]))


def digest(data):
    return "blake3:" + blake3.blake3(data).hexdigest()


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def value(self):
        """Skips one value; returns nothing (only the raw bytes matter for digests)."""
        tag = self.take(1)[0]
        if tag == 0x00:
            return
        if tag == 0x01:
            self.take(1)
        elif tag in (0x02, 0x03, 0x05):
            self.take(8)
        elif tag == 0x04:
            self.take(4)
        elif tag in (0x06, 0x07, 0x0A):
            self.take(self.u32())
        elif tag == 0x08:
            for _ in range(self.u32()):
                self.value()
        elif tag == 0x09:
            for _ in range(self.u32()):
                self.take(self.u32())
                self.value()
        else:
            raise ValueError("unknown tag %#x" % tag)


def items(encoding):
    """The snapshot's items as (class byte, raw item bytes), in encoded order."""
    r = Reader(encoding)
    if r.take(8) != MAGIC or r.take(1) != b"\x01":
        raise ValueError("not an encoding-v1 snapshot")
    out = []
    for _ in range(r.u32()):
        start = r.pos
        r.take(r.u32())  # path
        cls = r.take(1)[0]
        r.value()
        out.append((cls, encoding[start:r.pos]))
    if r.pos != len(encoding):
        raise ValueError("trailing bytes")
    return out


def class_digest(all_items, classes):
    chosen = [raw for c, raw in all_items if c in classes]
    return digest(MAGIC + b"\x01" + struct.pack(">I", len(chosen)) + b"".join(chosen))


def strict(pairs):
    """Refuses a member name that appears twice in one object (after unescaping)."""
    names = [k for k, _ in pairs]
    duplicate = next((k for k in names if names.count(k) > 1), None)
    if duplicate is not None:
        raise ValueError("duplicate member %r" % duplicate)
    return dict(pairs)


def main(path, pinned):
    problems = []
    try:
        doc = json.load(open(path, encoding="utf-8"), object_pairs_hook=strict)
    except ValueError as e:
        print("problem:", e)
        return 1
    pack, sig = doc["pack"], doc["signature"]
    if sig["public_key"] != pinned.strip():
        problems.append("signed by %s, not by the pinned agent key" % sig["public_key"])
    canonical = json.dumps(pack, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        public_key(sig["public_key"]).verify(b64url(sig["value"]), canonical.encode("utf-8"))
    except Exception as e:  # noqa: BLE001 - any failure is a verification failure
        problems.append("agent signature: %r" % e)

    snapshots = {}
    for d, body in pack.get("snapshots", {}).items():
        data = base64.b64decode(body)
        if digest(data) != d:
            problems.append("snapshot %s hashes to %s" % (d, digest(data)))
        snapshots[d] = items(data)

    for c in pack.get("captures", []):
        its = snapshots.get(c["digest"])
        if its is None:
            problems.append("capture %s: no snapshot" % c["capture_id"])
            continue
        for name, code in (("identity", 1), ("program", 2), ("setpoint", 3), ("history", 4)):
            if class_digest(its, (code,)) != c["classes"][name]:
                problems.append("capture %s: %s digest differs" % (c["capture_id"], name))
        # The change signature: the content items (program and setpoint) only.
        if class_digest(its, (2, 3)) != c["change_signature"]:
            problems.append("capture %s: change signature differs" % c["capture_id"])

    for a in pack.get("approvals", []):
        if not a.get("approver_public_key"):
            continue
        signed, _, s = a["token"].rpartition(".")
        try:
            public_key(a["approver_public_key"]).verify(b64url(s), signed.encode("ascii"))
        except Exception as e:  # noqa: BLE001
            problems.append("approval %s: %r" % (a["jti"], e))

    for p in problems:
        print("problem:", p)
    if not problems:
        print("verified: signature, %d snapshots, %d captures, %d approvals"
              % (len(snapshots), len(pack.get("captures", [])), len(pack.get("approvals", []))))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
