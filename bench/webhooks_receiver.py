"""Webhook receiver for bench/webhooks.sh: answers 200 to every POST and appends
"<webhook-id> <arrival unix ms>" per request to the file named by argv[2]. The arrival time is
taken when the request line and headers have been read (the first byte is a few hundred
microseconds earlier on loopback). Listens on 127.0.0.1:argv[1]."""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = open(sys.argv[2], "a", buffering=1)
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        arrived = time.time() * 1000
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        with LOCK:
            OUT.write(f"{self.headers.get('webhook-id')} {arrived:.1f}\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
