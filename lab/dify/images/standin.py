#!/usr/bin/python3
"""One small program standing in for the processes of Dify's images the lab cannot pull (no registry but its own):
each image has a command per role in `/usr/local/bin` that runs `standin.py ROLE ARGS…`. Each answers what the real
one's health check and its neighbours ask, nothing more. Not part of stackshift.

    curl -f URL            exit 22 on an HTTP error, 7 when nothing answers (compose health checks use it)
    redis-server --requirepass PW / redis-cli -a PW ping      RESP: AUTH, PING (PONG), anything else +OK
    squid -NYC             the ssrf proxy: refuses every request (403) on $HTTP_PORT
    nginx -g 'daemon off;' the gateway on $NGINX_PORT: /console/api, /api, /v1, /files, /health → api:5001, else web
    dify-web / dify-sandbox / weaviate / dify-agent-backend / dify-agent-local-sandbox    a health endpoint
    dify-plugin-daemon     creates its database ($DB_DATABASE on $DB_HOST) like the real daemon, then serves health
"""
import json
import os
import signal
import socket
import socketserver
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("STANDIN_VERSION", "unknown")
API_PREFIXES = ("/console/api", "/api", "/v1", "/files", "/mcp", "/triggers", "/e/", "/health")


def curl(args):
    fail = "-f" in args or "--fail" in args or any(a.startswith("-") and not a.startswith("--") and "f" in a
                                                   for a in args)
    url = next(a for a in args if a.startswith("http"))
    # curl reads only the lower-case http_proxy for http:// (the sandbox's HTTP_PROXY is for the sandboxed code)
    proxies = {"http": os.environ["http_proxy"]} if os.environ.get("http_proxy") else {}
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler(proxies)).open(url, timeout=5) as r:
            sys.stdout.write(r.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        if fail:
            sys.exit(22)
        sys.stdout.write(exc.read().decode(errors="replace"))
    except OSError:
        sys.exit(7)


class Resp(socketserver.StreamRequestHandler):
    def handle(self):
        authed = not self.server.password
        while True:
            line = self.rfile.readline()
            if not line:
                return
            if line.startswith(b"*"):
                words = []
                for _ in range(int(line[1:])):
                    size = int(self.rfile.readline()[1:])
                    words.append(self.rfile.read(size + 2)[:-2].decode())
            else:
                words = line.decode().split()
            cmd = (words or [""])[0].upper()
            if cmd == "AUTH":
                authed = words[-1] == self.server.password
                self.wfile.write(b"+OK\r\n" if authed else b"-WRONGPASS invalid password\r\n")
            elif not authed:
                self.wfile.write(b"-NOAUTH Authentication required.\r\n")
            elif cmd == "PING":
                self.wfile.write(b"+PONG\r\n")
            elif cmd == "QUIT":
                self.wfile.write(b"+OK\r\n")
                return
            else:
                self.wfile.write(b"+OK\r\n")


class TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def redis_server(args):
    server = TcpServer(("0.0.0.0", 6379), Resp)
    server.password = args[args.index("--requirepass") + 1] if "--requirepass" in args else ""
    print("Ready to accept connections tcp", flush=True)
    server.serve_forever()


def redis_cli(args):
    password = args[args.index("-a") + 1] if "-a" in args else os.environ.get("REDISCLI_AUTH", "")
    with socket.create_connection(("127.0.0.1", 6379), timeout=3) as s:
        f = s.makefile("rwb")
        for words in ([["AUTH", password]] if password else []) + [[args[-1].upper()]]:
            f.write((f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)).encode())
            f.flush()
            reply = f.readline().decode().strip()
        print(reply.lstrip("+-"))


def http(port, routes, proxy=None):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            if proxy:
                target = proxy(self.path)
                if target:
                    return self._forward(target)
            status, body = routes.get(self.path.split("?")[0], (404, {"error": "not found"}))
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _forward(self, target):
            length = int(self.headers.get("Content-Length") or 0)
            req = urllib.request.Request(target + self.path, data=self.rfile.read(length) if length else None,
                                         method=self.command, headers={"Content-Type": self.headers.get(
                                             "Content-Type", "application/json")})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status, data = r.status, r.read()
            except urllib.error.HTTPError as exc:
                status, data = exc.code, exc.read()
            except OSError:
                status, data = 502, b"502 Bad Gateway"
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("0.0.0.0", int(port)), Handler)
    print(f"{sys.argv[1]} {VERSION} listening on {port}", flush=True)
    server.serve_forever()


def nginx(_args):
    port = os.environ.get("NGINX_PORT", "80")

    def upstream(path):
        return "http://api:5001" if path.startswith(API_PREFIXES) else "http://web:3000"
    http(port, {}, upstream)


def plugin_daemon(_args):
    import psycopg2

    e = os.environ
    name = e.get("DB_DATABASE", "dify_plugin")
    while True:
        try:
            conn = psycopg2.connect(host=e.get("DB_HOST", "db_postgres"), port=e.get("DB_PORT", "5432"),
                                    user=e.get("DB_USERNAME", "postgres"), password=e.get("DB_PASSWORD", ""),
                                    dbname=e.get("DB_DEFAULT_DATABASE", "postgres"), connect_timeout=3)
            break
        except psycopg2.OperationalError as exc:
            print(f"plugin daemon: database not ready ({exc})", flush=True)
            time.sleep(1)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
            print(f"plugin daemon: created database {name}", flush=True)
    conn.close()
    http(e.get("SERVER_PORT", "5002"), {"/health/check": (200, {"code": 0, "message": "success"})})


ROLES = {
    "curl": curl,
    "redis-server": redis_server,
    "redis-cli": redis_cli,
    "squid": lambda a: http(os.environ.get("HTTP_PORT", "3128"), {}),
    "nginx": nginx,
    "dify-web": lambda a: http(os.environ.get("PORT", "3000"), {"/": (200, f"<html>Dify {VERSION}</html>"),
                                                                 "/apps": (200, "<html>apps</html>")}),
    "dify-sandbox": lambda a: http(os.environ.get("SANDBOX_PORT", "8194"), {"/health": (200, "ok")}),
    "weaviate": lambda a: http(8080, {"/v1/.well-known/ready": (200, ""), "/v1/.well-known/live": (200, ""),
                                      "/v1/meta": (200, {"version": VERSION})}),
    "dify-agent-backend": lambda a: http(5050, {"/health": (200, {"status": "ok", "version": VERSION})}),
    "dify-agent-local-sandbox": lambda a: http(5004, {"/healthz": (200, "ok")}),
    "dify-plugin-daemon": plugin_daemon,
}

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ROLES[sys.argv[1]](sys.argv[2:])
