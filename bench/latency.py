#!/usr/bin/env python3
"""Event-to-webhook latency under load: a webhook sink and a probe in one process.

The probe POSTs one `check = "latency"` event every 50 ms to vakt; a rule sends each to
this sink by webhook; the sink records, for each delivery, the time from vakt's receipt of
the event (`event.received_at` in the body) to the delivery's arrival. Run alongside a
`vakt bench` load; prints p50/p90/p99/max in ms as JSON when the probe's time is up.
Usage: latency.py SINK_PORT VAKT_URL SECONDS
"""
import json
import sys
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, vakt, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
latencies = []
accepts = []  # the probe's POST round trip: receipt to durable commit, plus HTTP
lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        arrived = time.time()
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        event = body["event"]
        stamp = event.get("received_at") or event["event"]["received_at"]
        received = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        with lock:
            latencies.append((arrived - received.timestamp()) * 1000)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
threading.Thread(target=server.serve_forever, daemon=True).start()
sent = 0
end = time.time() + seconds
while time.time() < end:
    event = {"resource": f"probe{sent}", "check": "latency", "severity": "major", "summary": "probe"}
    request = urllib.request.Request(f"{vakt}/api/v1/events", json.dumps(event).encode(),
                                     {"content-type": "application/json"})
    try:
        started = time.time()
        urllib.request.urlopen(request, timeout=10).read()
        accepts.append((time.time() - started) * 1000)
        sent += 1
    except Exception as error:  # a refusal under load is counted, not fatal
        print(f"probe refused: {error}", file=sys.stderr)
    time.sleep(0.05)
time.sleep(3)
with lock:
    got = sorted(latencies)
pick = lambda q: round(got[min(len(got) - 1, int(q * len(got)))], 1) if got else None
acc = sorted(accepts)
pick_acc = lambda q: round(acc[min(len(acc) - 1, int(q * len(acc)))], 1) if acc else None
print(json.dumps({"probes_sent": sent, "delivered": len(got), "p50_ms": pick(0.5), "p90_ms": pick(0.9),
                  "p99_ms": pick(0.99), "max_ms": round(got[-1], 1) if got else None,
                  "accept_p50_ms": pick_acc(0.5), "accept_p99_ms": pick_acc(0.99)}))
