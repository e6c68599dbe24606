"""A `message`-protocol analyzer that fails one message, once, for
crates/logdist/tests/original_analyzer.rs: it serves POST /message/process as the original
analyzer does ({"data": message} in, 200 out), but answers 500 the first time it gets the
message whose `seq` is FAIL_SEQ. Every message it acknowledges is appended to
RECEIVED_FILE as a JSON line. It listens on 127.0.0.1:PORT and does not register (the
test gives it to the distributor with --analyzer).
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ["PORT"])
FAIL_SEQ = int(os.environ["FAIL_SEQ"])
received = open(os.environ["RECEIVED_FILE"], "a", buffering=1)
lock = threading.Lock()
failed = False


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global failed
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/message/process":
            return self.answer(404, {"error": "Not found"})
        try:
            data = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": "Invalid message format"})
        with lock:
            if data.get("seq") == FAIL_SEQ and not failed:
                failed = True
                return self.answer(500, {"error": "failing this one once"})
            received.write(json.dumps(data) + "\n")
        self.answer(200, {"status": "Message processed"})

    def answer(self, status, body):
        text = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
