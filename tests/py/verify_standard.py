#!/usr/bin/env python3
"""Verify a walhook delivery's Standard Webhooks v1 (HMAC-SHA256) signature with
the reference `standardwebhooks` library.

Reads JSON on stdin: {"url", "method", "headers": {...}, "body_b64", "secret", "jwks"}.
Exits 0 when valid, 1 with a message on stderr otherwise.
"""
import base64
import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    req = json.load(sys.stdin)
    body = base64.b64decode(req["body_b64"])
    try:
        Webhook(req["secret"]).verify(body, req["headers"], json_parse=False)
    except Exception as e:  # the library raises several types
        print(f"standardwebhooks: invalid: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("standardwebhooks: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
