#!/usr/bin/env python3
"""Validate walhook's /v1/openapi.json with openapi-spec-validator as an
OpenAPI 3.1 document.

Reads the document as JSON on stdin. Exits 0 when valid, 1 with the reason on
stderr otherwise.
"""
import json
import sys

from openapi_spec_validator import OpenAPIV31SpecValidator, validate


def main() -> int:
    doc = json.load(sys.stdin)
    if not str(doc.get("openapi", "")).startswith("3.1"):
        print(f"openapi-spec-validator: not 3.1: {doc.get('openapi')!r}", file=sys.stderr)
        return 1
    try:
        validate(doc, cls=OpenAPIV31SpecValidator)
    except Exception as e:  # the library raises several types
        print(f"openapi-spec-validator: invalid: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("openapi-spec-validator: valid OpenAPI 3.1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
