"""A loopback OpenID Connect issuer for bench_service.py: discovery, a JWKS, one token.

Run with the interpreter of a rendered service that has authentication (its virtual
environment has PyJWT and cryptography; the template suite's may not):

    /tmp/cfs-bench/on/.venv/bin/python benchmarks/bench_issuer.py --audience orders-service

It makes an RSA key (2048 bits, RS256, as most issuers sign), listens on 127.0.0.1 on a
port the system chooses, and prints one JSON line to stdout: the issuer's URL, the key
id, and a long-lived access token (sub "bench", the write scope, aud the --audience).
Then it serves `/.well-known/openid-configuration` and `/jwks` until stdin closes or it
gets SIGTERM, and writes the number of requests per path to stderr as it exits, so the
benchmark can tell how often the services fetched the keys.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
ALGORITHM = "RS256"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audience", required=True, help="the token's aud (AUTH_AUDIENCE)")
    parser.add_argument("--subject", default="bench", help="the token's sub (bench)")
    parser.add_argument("--scope", default="items:write", help="the token's scope (items:write)")
    parser.add_argument("--ttl", type=int, default=30 * 24 * 3600, help="seconds until it expires (30 days)")
    args = parser.parse_args()

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex
    jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True) | {
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }
    requests: Counter[str] = Counter()
    documents: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            requests[self.path] += 1
            body = documents.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    documents[DISCOVERY_PATH] = json.dumps(
        {
            "issuer": issuer,
            "jwks_uri": issuer + JWKS_PATH,
            "id_token_signing_alg_values_supported": [ALGORITHM],
        }
    ).encode()
    documents[JWKS_PATH] = json.dumps({"keys": [jwk]}).encode()
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": args.audience,
        "sub": args.subject,
        "scope": args.scope,
        "iat": now,
        "exp": now + args.ttl,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The benchmark holds our stdin open: when it goes, so do we.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(json.dumps({"issuer": issuer, "kid": kid, "token": token, "algorithm": ALGORITHM}), flush=True)
    stop.wait()
    server.shutdown()
    print(json.dumps({"requests": dict(requests)}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
