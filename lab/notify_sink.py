"""The lab's stand-in for the chat or alerting webhook the notification automations post to
(`deployments/automations.py`): keeps every JSON body in `$STACKSHIFT_LAB_HOME/logs/notifications.jsonl`.

Without it the block's placeholder URL refused every notification, and the Prefect server retried each one three
times, logged a traceback per attempt and wrote it to its dead-letter folder (about 1,100 a day of test runs).
`lab/setup` starts it on 127.0.0.1:4210 and points the block at it; `GET /` answers while it runs.
"""
from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lab.paths import LAB_HOME

PORT = 4210
URL = f"http://127.0.0.1:{PORT}/notify"
LOG = LAB_HOME / "logs" / "notifications.jsonl"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            record = json.loads(body or b"{}")
        except ValueError:
            record = {"unparsed": body.decode(errors="replace")}
        with LOG.open("a") as log:
            log.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "body": record}) + "\n")
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"stackshift lab notification sink\n")

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    print(f"[lab] notification sink on {URL}, writing {LOG}", file=sys.stderr)
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()


if __name__ == "__main__":
    main()
