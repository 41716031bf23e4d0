#!/usr/bin/env python3
"""Registries that misbehave, for strata's tests.

  fake_registry.py PORTFILE bearer   token auth (Bearer challenge, token service at /token,
                                     user "u" / password "p"); /v2/x/manifests/huge answers with
                                     a 10 MB body, /v2/x/manifests/endless never stops
  fake_registry.py PORTFILE bearer REALM
                                     the same, with the realm REALM ({host} is this registry's
                                     host:port, {port} its port); every request that carries an
                                     Authorization header is logged to stderr as "auth PATH"
  fake_registry.py PORTFILE die UPSTREAM
                                     the same, but after the first cut every request finds the
                                     connection closed (a registry that died mid-pull)
  fake_registry.py PORTFILE proxy UPSTREAM
                                     forwards to UPSTREAM (host:port), but cuts the first answer
                                     to each blob GET after half its bytes (a dropped connection)

The port it listens on (127.0.0.1, chosen by the kernel) is written to PORTFILE.
"""
import base64, http.client, http.server, json, socketserver, sys

mode = sys.argv[2]
cut = set()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        if auth: sys.stderr.write("auth " + self.path.split("?")[0] + "\n"); sys.stderr.flush()
        if self.path.startswith("/token"):
            ok = auth == "Basic " + base64.b64encode(b"u:p").decode()
            body = json.dumps({"token": "tok-123"} if ok else {"errors": [{"code": "UNAUTHORIZED"}]}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body); return
        if auth != "Bearer tok-123":
            host = self.headers.get("Host")
            realm = sys.argv[3] if len(sys.argv) > 3 else "http://{host}/token"
            realm = realm.replace("{host}", host).replace("{port}", str(self.server.server_address[1]))
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"')
            self.send_header("Content-Length", "0"); self.end_headers(); return
        if self.path == "/v2/":
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}"); return
        if self.path.endswith("/manifests/huge"):
            size = 10 << 20
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(size)); self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(size // len(chunk)): self.wfile.write(chunk)
            except OSError: pass
            return
        if self.path.endswith("/manifests/endless"):
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
            chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
            try:
                while True: self.wfile.write(chunk)
            except OSError: pass
            return
        self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()

    def proxy(self):
        if mode == "die" and cut:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        upstream = http.client.HTTPConnection(sys.argv[3])
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if "Range" in self.headers: sys.stderr.write("range " + self.headers["Range"] + "\n"); sys.stderr.flush()
        upstream.request(self.command, self.path, body=body, headers=headers)
        r = upstream.getresponse()
        data = r.read() if self.command != "HEAD" else b""
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection"): self.send_header(k, v)
        self.end_headers()
        blob = "/blobs/sha256:" in self.path and self.command == "GET" and r.status == 200
        if blob and self.path not in cut and len(data) > 1024:
            cut.add(self.path)
            sys.stderr.write("cut " + self.path + "\n"); sys.stderr.flush()
            self.wfile.write(data[: len(data) // 2]); self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data)

    def handle_one(self):
        self.bearer() if mode == "bearer" else self.proxy()
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f: f.write(str(server.server_address[1]))
server.serve_forever()
