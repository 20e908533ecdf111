"""A webhook receiver for tests, run as its own process: `python -m tests.webhook_receiver SECRET LOG [FAILS]`.

It verifies each request's Standard Webhooks signature (with the `standardwebhooks` package, as a
real receiver would), answers 500 to the first FAILS requests and 204 after that, and appends one
JSON line per request to LOG. With FAILS = -1 it answers every request with a redirect to
http://127.0.0.1:1/ (which the farm must not follow). It prints its port on stdout when ready.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> None:
    """Serve until killed."""
    secret, log_path, fails = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0
    verifier = Webhook(secret)
    lock = threading.Lock()
    seen = {"count": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                verifier.verify(body, dict(self.headers))
                verified, reason = True, None
            except WebhookVerificationError as error:
                verified, reason = False, str(error)
            with lock:
                seen["count"] += 1
                number = seen["count"]
            if fails == -1:
                status = 302
            else:
                status = 500 if number <= fails else 204
            with lock, open(log_path, "a") as log:
                record = {
                    "number": number,
                    "status": status,
                    "verified": verified,
                    "reason": reason,
                    "path": self.path,
                    "host": self.headers.get("Host"),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(body) if body else None,
                }
                log.write(json.dumps(record) + "\n")
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
