"""The demo api: GET /health reports version, database revision and connectivity; POST /items writes an account,
POST /events writes an event (or, given `touch`, adds a token to one)."""
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa

from db import url

VERSION = os.environ.get("APP_VERSION", "unknown")
UNHEALTHY = os.environ.get("SIMULATE_UNHEALTHY") == "true"
engine = sa.create_engine(url(), pool_pre_ping=True, pool_size=2)


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Version", VERSION)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/health":
            return self._send(404, {"error": "not found"})
        body = {"status": "ok", "version": VERSION, "pid": os.getpid()}
        try:
            with engine.connect() as conn:
                body["db_revision"] = [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
            body["db"] = "ok"
        except Exception as exc:  # the demo reports, it does not crash
            body.update(status="error", db="unreachable", error=type(exc).__name__)
        if UNHEALTHY:
            body.update(status="error", error="SIMULATE_UNHEALTHY")
        self._send(200 if body["status"] == "ok" else 503, body)

    def do_POST(self):
        if self.path not in ("/items", "/events"):
            return self._send(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with engine.begin() as conn:
            if self.path == "/items":
                new_id = conn.execute(sa.text("INSERT INTO accounts (name) VALUES (:n) RETURNING id"),
                                      {"n": body.get("name", "item")}).scalar()
            elif "touch" in body:  # an update: one more token on an existing event
                new_id = conn.execute(sa.text("UPDATE events SET total_tokens = total_tokens + 1 WHERE id = :i "
                                              "RETURNING id"), {"i": body["touch"]}).scalar()
            else:
                new_id = conn.execute(sa.text("INSERT INTO events (account_id, total_tokens, payload) "
                                              "VALUES (:a, :t, :p) RETURNING id"),
                                      {"a": body.get("account_id", 1), "t": body.get("total_tokens", 0),
                                       "p": body.get("payload", "")}).scalar()
        self._send(201, {"id": new_id})

    def log_message(self, fmt, *args):
        pass


server = ThreadingHTTPServer(("0.0.0.0", 5001), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"api {VERSION} listening on 5001", flush=True)
server.serve_forever()
