"""An analyzer that behaves exactly like the original project's (analyzer/analyzer.py, Flask),
for crates/logdist/tests/original_analyzer.rs.

As the original: its id, weight and distributor come from ANALYZER_ID, ANALYZER_WEIGHT and
DISTRIBUTOR_URL; it listens on port 3000 + ANALYZER_ID; it registers with
{"id": "analyzer_ID", "weight": W, "port": P} BEFORE its HTTP server listens; it serves only
POST /message/process, one message a request as {"data": message}, answering 200
{"status": "Message processed"} or 400 {"error": "Invalid message format"} for an empty
body; it has no /packets and no /health; it deregisters at exit through atexit.

Two additions for the test alone, neither of which changes what the distributor sees:
- PORT overrides 3000 + ANALYZER_ID, so that the test can take a free port.
- RECEIVED_FILE, when set, is a file each received message is appended to as one JSON
  line, so that the test can count what arrived (the original only logs it).
"""

import atexit
import json
import logging
import os
import sys

import requests
from flask import Flask, jsonify, request

app = Flask(__name__)
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
log = logging.getLogger("analyzer")

ANALYZER_ID = os.environ.get("ANALYZER_ID", "1")
ANALYZER_WEIGHT = float(os.environ.get("ANALYZER_WEIGHT", "0.5"))
DISTRIBUTOR_URL = os.environ.get("DISTRIBUTOR_URL", "http://distributor:3000")
# Test addition: a free port instead of 3000 + ID.
PORT = int(os.environ.get("PORT", str(3000 + int(ANALYZER_ID))))
NAME = f"analyzer_{ANALYZER_ID}"
# Test addition: where received messages are counted.
RECEIVED_FILE = os.environ.get("RECEIVED_FILE")
received = open(RECEIVED_FILE, "a", buffering=1) if RECEIVED_FILE else None


def register():
    body = {"id": NAME, "weight": ANALYZER_WEIGHT, "port": PORT}
    try:
        answer = requests.post(f"{DISTRIBUTOR_URL}/analyzer/register", json=body, timeout=10)
        log.info("Registered with the distributor: %s %s", answer.status_code, answer.text)
    except requests.RequestException as e:
        log.error("Could not register with the distributor: %s", e)


def deregister():
    try:
        requests.post(f"{DISTRIBUTOR_URL}/analyzer/deregister", json={"id": NAME}, timeout=10)
        log.info("Deregistered from the distributor")
    except requests.RequestException as e:
        log.error("Could not deregister: %s", e)


@app.route("/message/process", methods=["POST"])
def process_message():
    message = request.get_json(silent=True)
    if not message:
        return jsonify({"error": "Invalid message format"}), 400
    data = message.get("data") if isinstance(message, dict) else None
    log.info("%s received message: %s", NAME, data)
    if received is not None:
        received.write(json.dumps(data) + "\n")
    return jsonify({"status": "Message processed"}), 200


if __name__ == "__main__":
    # As the original: registers first, then listens.
    register()
    atexit.register(deregister)
    app.run(host="127.0.0.1", port=PORT, threaded=True)
