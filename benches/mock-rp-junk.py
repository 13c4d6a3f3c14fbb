#!/usr/bin/env python3
"""Memory of `logoutd mock-rp` under junk POSTs: N unauthenticated POSTs, each carrying a
distinct ~61 KB token that fails validation, over one keep-alive connection. Prints the mock
RP's resident memory (VmRSS, and the peak VmHWM) before and after, and the receipts file's size.

    python3 benches/mock-rp-junk.py [LOGOUTD] [N]

LOGOUTD defaults to target/release/logoutd and N to 2000. Everything runs on 127.0.0.1.
"""

import base64
import http.client
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def junk_token(n: int, size: int) -> str:
    """A token of about `size` bytes whose claims are thousands of tiny members: what costs a
    decoder the most memory per byte sent."""
    header = b64(b'{"alg":"ES256","typ":"logout+jwt","kid":"junk"}')
    members = [f'"iss":"https://op.example","sid":"junk-{n}"']
    length, i = len(members[0]) + 2, 0
    while length < size * 3 // 4:
        members.append(f'"k{i}":0')
        length += len(members[-1]) + 1
        i += 1
    claims = "{" + ",".join(members) + "}"
    return f"{header}.{b64(claims.encode())}.AAAA"


def status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return 0


def serve_jwks(path: str) -> str:
    body = open(path, "rb").read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/jwks.json"


def main() -> None:
    logoutd = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/logoutd")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        subprocess.run([logoutd, "keys", "generate", "--alg", "ES256", "--keys-dir", keys],
                       check=True, capture_output=True)
        jwks = os.path.join(tmp, "jwks.json")
        with open(jwks, "wb") as out:
            subprocess.run([logoutd, "keys", "jwks", "--keys-dir", keys], check=True, stdout=out)
        receipts = os.path.join(tmp, "receipts.jsonl")
        rp = subprocess.Popen(
            [logoutd, "mock-rp", "--listen", "127.0.0.1:0", "--issuer", "https://op.example",
             "--client-id", "rp-1", "--jwks-uri", serve_jwks(jwks), "--receipts", receipts],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            address = rp.stdout.readline().strip().removeprefix("listening on http://")
            host, port = address.rsplit(":", 1)
            before = status(rp.pid, "VmRSS")
            conn = http.client.HTTPConnection(host, int(port))
            statuses = {}
            started = time.monotonic()
            for n in range(count):
                body = urllib.parse.urlencode({"logout_token": junk_token(n, 61 * 1024 - 200)})
                conn.request("POST", "/backchannel", body,
                             {"content-type": "application/x-www-form-urlencoded"})
                response = conn.getresponse()
                response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            elapsed = time.monotonic() - started
            after, peak = status(rp.pid, "VmRSS"), status(rp.pid, "VmHWM")
            size = os.path.getsize(receipts)
            print(f"posts={count} body_bytes={len(body)} statuses={statuses} seconds={elapsed:.1f} "
                  f"rss_before={before / 1024:.1f}MiB rss_after={after / 1024:.1f}MiB "
                  f"rss_peak={peak / 1024:.1f}MiB receipts_file={size / 1048576:.1f}MiB")
        finally:
            rp.terminate()
            rp.wait()


if __name__ == "__main__":
    main()
