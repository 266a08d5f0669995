#!/usr/bin/env python3
"""Verify a walhook delivery's RFC 9421 HTTP Message Signature with the
`http-message-signatures` library, keys resolved from the JWKS by keyid.

Requires coverage of @method, @target-uri, content-digest, content-type,
webhook-id and webhook-timestamp, a signature at most 5 minutes old, and a
content-digest that matches the body (the library recomputes it).
Reads JSON on stdin: {"url", "method", "headers": {...}, "body_b64", "secret", "jwks"}.
Exits 0 when valid, 1 with a message on stderr otherwise.
"""
import base64
import datetime
import json
import sys

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver, algorithms

REQUIRED = (
    "@method",
    "@target-uri",
    "content-digest",
    "content-type",
    "webhook-id",
    "webhook-timestamp",
)


def b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main() -> int:
    req = json.load(sys.stdin)
    body = base64.b64decode(req["body_b64"])
    public = {
        k["kid"]: Ed25519PublicKey.from_public_bytes(b64url(k["x"]))
        for k in req["jwks"]["keys"]
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
    }
    message = requests.Request(
        req["method"], req["url"], headers=req["headers"], data=body
    ).prepare()
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys=public, private_keys={}),
    )
    try:
        results = verifier.verify(
            message,
            max_age=datetime.timedelta(minutes=5),
            require_components=REQUIRED,
            body=body,
        )
    except Exception as e:
        print(f"rfc9421: invalid: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if not results or results[0].body != body:
        print("rfc9421: content-digest was not verified against the body", file=sys.stderr)
        return 1
    print(f"rfc9421: valid with {results[0].parameters.get('keyid')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
