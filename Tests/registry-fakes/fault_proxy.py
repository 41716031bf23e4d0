#!/usr/bin/env python3
"""A proxy in front of a real registry that injects faults, for strata's tests.

  fault_proxy.py PORTFILE UPSTREAM [FAULT...]

UPSTREAM is host:port of the registry. Requests are numbered from 1 in the order they
arrive; each FAULT applies to some of them (the first that matches wins). So that a client
with a few tries always gets through, the same method and path is faulted at most twice in a
row (except with N = 1, a registry that always fails); a fault held back by that goes to the
next request that may take it, so every scheduled kind happens once there are enough requests.

  500=N       answer 500 to every Nth request (500=1: a registry that always fails)
  429=N       answer 429 with Retry-After: 1 to every Nth request
  close=N     close the connection without an answer on every Nth request
  lost=N      forward every Nth upload request (PATCH or PUT under /blobs/uploads/) to the
              registry, then close the connection without passing the answer on
  forget=N    answer every Nth upload request with 404 BLOB_UPLOAD_UNKNOWN, as a registry
              that lost the upload (restarted, or cleaned it up) does
  stall=S     send half of the first answer to each blob GET, then hold the connection
              silent for S seconds before closing it
  flip=DIGEST flip one byte in the middle of every answer that carries blob DIGEST

The Host header is passed on, so the registry's upload locations name the proxy. Each fault
is logged to stderr ("fault 500 GET /v2/…", "stall …", "flip …"), and so is every Range
header ("range bytes=…"). It listens on 127.0.0.1, on a port the kernel picks, written to
PORTFILE.
"""
import http.client, http.server, socket, socketserver, sys, threading, time

upstream_host = sys.argv[2]
faults = dict(f.split("=", 1) for f in sys.argv[3:])
lock = threading.Lock()
counter = {"all": 0, "uploads": 0}
pending = []  # faults held back by the streak cap, to be injected on a later request
stalled = set()
streak = {}


def log(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def every(key, n):
    return n > 0 and counter[key] % n == 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def cut(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def answer(self, status, headers, body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_one(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upload = "/blobs/uploads/" in self.path and self.command in ("PATCH", "PUT")
        with lock:
            counter["all"] += 1
            if upload:
                counter["uploads"] += 1
            n = counter["all"]
            fault = None
            if every("all", int(faults.get("500", 0))):
                fault = "500"
            elif every("all", int(faults.get("429", 0))):
                fault = "429"
            elif every("all", int(faults.get("close", 0))):
                fault = "close"
            elif upload and every("uploads", int(faults.get("lost", 0))):
                fault = "lost"
            elif upload and every("uploads", int(faults.get("forget", 0))):
                fault = "forget"
            key = self.command + " " + self.path.split("?")[0]
            always = any(faults.get(k) == "1" for k in ("500", "429", "close", "lost", "forget"))
            if fault and streak.get(key, 0) >= 2 and not always:
                # Not on this request again: the fault goes to the next one that may take it,
                # so every scheduled kind still happens.
                pending.append(fault)
                fault = None
            elif not fault and pending and streak.get(key, 0) < 2 and (pending[0] in ("500", "429", "close") or upload):
                fault = pending.pop(0)
            streak[key] = streak.get(key, 0) + 1 if fault else 0
        if fault:
            log(f"fault {fault} {self.command} {self.path} (request {n})")
        if fault == "500":
            error = b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}'
            return self.answer(500, [("Content-Type", "application/json")], error)
        if fault == "429":
            return self.answer(429, [("Retry-After", "1")])
        if fault == "close":
            return self.cut()
        if fault == "forget":
            error = b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}'
            return self.answer(404, [("Content-Type", "application/json")], error)
        if "Range" in self.headers:
            log("range " + self.headers["Range"])

        upstream = http.client.HTTPConnection(upstream_host, timeout=60)
        headers = {}
        for k, v in self.headers.items():
            if k.lower() not in ("connection", "keep-alive"):
                # A repeated header (skopeo sends one Accept per media type) is joined, not lost.
                headers[k] = headers[k] + ", " + v if k in headers else v
        upstream.request(self.command, self.path, body=body, headers=headers)
        r = upstream.getresponse()
        data = r.read() if self.command != "HEAD" else b""
        upstream.close()
        if fault == "lost":
            return self.cut()

        blob = self.command == "GET" and "/blobs/sha256:" in self.path and r.status in (200, 206)
        if blob and faults.get("flip") and self.path.endswith("/blobs/" + faults["flip"]) and data:
            log("flip " + self.path)
            data = bytearray(data)
            data[len(data) // 2] ^= 0x01
            data = bytes(data)
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        if self.command == "HEAD":
            if r.getheader("Content-Length"):
                self.send_header("Content-Length", r.getheader("Content-Length"))
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if blob and "stall" in faults and len(data) > 1024:
            with lock:
                first = self.path not in stalled
                stalled.add(self.path)
            if first:
                log("stall " + self.path)
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                time.sleep(float(faults["stall"]))
                return self.cut()
        self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
