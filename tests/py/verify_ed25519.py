#!/usr/bin/env python3
"""Verify a walhook delivery's Standard Webhooks v1a (Ed25519) signatures with
`cryptography`, independently of walhook's own code.

Signed content is `{webhook-id}.{webhook-timestamp}.{body}`. Valid when the
timestamp is within 5 minutes and a `v1a,` entry verifies with a key of the JWKS.
Reads JSON on stdin: {"url", "method", "headers": {...}, "body_b64", "secret", "jwks"}.
Exits 0 when valid, 1 with a message on stderr otherwise. Prints the kid that matched.
"""
import base64
import json
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TOLERANCE = 5 * 60


def b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main() -> int:
    req = json.load(sys.stdin)
    headers = {k.lower(): v for k, v in req["headers"].items()}
    body = base64.b64decode(req["body_b64"])
    try:
        msg_id = headers["webhook-id"]
        ts = headers["webhook-timestamp"]
        sigs = headers["webhook-signature"]
    except KeyError as e:
        print(f"ed25519: missing header {e}", file=sys.stderr)
        return 1
    if abs(time.time() - int(ts)) > TOLERANCE:
        print("ed25519: timestamp outside 5 minutes", file=sys.stderr)
        return 1
    content = f"{msg_id}.{ts}.".encode() + body
    keys = [
        (k.get("kid"), Ed25519PublicKey.from_public_bytes(b64url(k["x"])))
        for k in req["jwks"]["keys"]
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
    ]
    entries = [e.split(",", 1)[1] for e in sigs.split(" ") if e.startswith("v1a,")]
    if not entries:
        print("ed25519: no v1a entry", file=sys.stderr)
        return 1
    for sig in entries:
        for kid, key in keys:
            try:
                key.verify(base64.b64decode(sig), content)
            except InvalidSignature:
                continue
            print(f"ed25519: valid with {kid}")
            return 0
    print("ed25519: no v1a entry verifies with a JWKS key", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
