# bench/console.py: the console's board over N open alerts (issue 16: first response under
# 300 ms at the server and under 500 KB with 10,000 open alerts).
#   python3 bench/console.py target/release/vakt 10000
# Times GET / (groups by service), /?view=table and /?q=... after the alerts exist: the
# first request reads the open alerts (the snapshot), later ones reuse it until a change.
import http.client, json, os, subprocess, sys, tempfile, time
binary, n = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
cfg = os.path.join(d, "vakt.toml")
open(cfg, "w").write('[server]\nlisten = "127.0.0.1:18473"\nwrite_rate_per_client = 0\n[storage]\ndata_dir = "%s/data"\n' % d)
p = subprocess.Popen([binary, "serve", "--config", cfg], env={**os.environ, "VAKT_LOG": "warn"})
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 18473); c.request("GET", "/readyz"); r = c.getresponse(); r.read()
        if r.status == 200: break
    except OSError: pass
    time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", 18473)
sev = ["critical", "major", "minor", "warning", "info"]
for i in range(0, n, 500):
    batch = [{"resource": "host%05d" % (i + k), "check": "check%d" % ((i + k) % 7), "severity": sev[(i + k) % 5],
              "summary": "something is wrong on host%05d" % (i + k), "service": "svc%02d" % ((i + k) % 50),
              "environment": "production", "labels": {"team": "team%d" % ((i + k) % 9), "rack": "r%d" % ((i + k) % 40)}}
             for k in range(min(500, n - i))]
    c.request("POST", "/api/v1/events", json.dumps(batch), {"content-type": "application/json"}); r = c.getresponse(); r.read()
    assert r.status == 202, (r.status)
time.sleep(1)
def get(path):
    c = http.client.HTTPConnection("127.0.0.1", 18473)
    t = time.perf_counter()
    c.request("GET", path); r = c.getresponse(); b = r.read()
    assert r.status == 200, r.status
    return (time.perf_counter() - t) * 1000, len(b)
for label, path in [("groups, first (reads the snapshot)", "/"), ("groups, again", "/"),
                    ("table", "/?view=table"), ("filtered table", "/?q=service%3D%22svc07%22+team%3D~%22team[1-3]%22&view=table"),
                    ("two-level groups", "/?group=service,severity"), ("live refresh fragment", "/?fragment=board")]:
    runs = [get(path) for _ in range(5)] if "first" not in label else [get(path)]
    ms = sorted(t for t, _ in runs)
    print("%-36s %7.1f ms (median of %d)  %7d bytes" % (label, ms[len(ms) // 2], len(runs), runs[0][1]))
# After a change the next board reads the alerts again.
c.request("POST", "/api/v1/events", json.dumps({"resource": "x", "check": "y", "summary": "z"}), {"content-type": "application/json"}); r = c.getresponse(); r.read()
t, size = get("/")
print("%-36s %7.1f ms              %7d bytes" % ("groups, first after a change", t, size))
print("rss %d MiB" % (int([l for l in open("/proc/%d/status" % p.pid) if l.startswith("VmRSS")][0].split()[1]) // 1024))
p.terminate(); p.wait()
