# bench/pages.py: RSS after 8 concurrent GET /api/v1/events?limit=1000 over events with 50 KB details.
import http.client, json, os, subprocess, sys, tempfile, time, concurrent.futures
binary, n = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
cfg = os.path.join(d, "vakt.toml")
extra = sys.argv[3] if len(sys.argv) > 3 else ""
open(cfg, "w").write('[server]\nlisten = "127.0.0.1:18472"\nwrite_rate_per_client = 0\n%s\n[storage]\ndata_dir = "%s/data"\n' % (extra, d))
p = subprocess.Popen([binary, "serve", "--config", cfg], env={**os.environ, "VAKT_LOG": "warn"})
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 18472); c.request("GET", "/readyz"); r = c.getresponse(); r.read()
        if r.status == 200: break
    except OSError: pass
    time.sleep(0.1)
def rss(field="VmRSS"):
    return int([l for l in open("/proc/%d/status" % p.pid) if l.startswith(field)][0].split()[1]) // 1024
blob = "x" * 50000
c = http.client.HTTPConnection("127.0.0.1", 18472)
for i in range(0, n, 10):
    batch = [{"resource": "r%d" % (i + k), "check": "c", "severity": "minor", "summary": "s", "details": {"blob": blob}} for k in range(10)]
    c.request("POST", "/api/v1/events", json.dumps(batch), {"content-type": "application/json"}); r = c.getresponse(); r.read()
    assert r.status == 202, (r.status)
time.sleep(1)
before = rss()
def get(_):
    c = http.client.HTTPConnection("127.0.0.1", 18472)
    t = time.perf_counter()
    c.request("GET", "/api/v1/events?limit=1000"); r = c.getresponse(); b = r.read()
    return len(b), time.perf_counter() - t
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    res = list(ex.map(get, range(8)))
after = rss(); peak = rss("VmHWM")
time.sleep(5)
later = rss()
print("events=%d page_bytes=%d page_s=%.2f rss_before=%dMB rss_after=%dMB peak=%dMB rss_5s_later=%dMB" % (n, res[0][0], max(t for _, t in res), before, after, peak, later))
p.terminate(); p.wait()
