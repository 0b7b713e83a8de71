# bench/silences.py: Silence create time at N stored silences: start vakt (release), create N silences,
# then time 200 more creates one by one. Usage: python3 silences.py VAKT_BIN N
import http.client, json, os, subprocess, sys, tempfile, time, concurrent.futures, statistics
binary, n = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
cfg = os.path.join(d, "vakt.toml")
open(cfg, "w").write('[server]\nlisten = "127.0.0.1:18471"\nwrite_rate_per_client = 0\n[storage]\ndata_dir = "%s/data"\n' % d)
p = subprocess.Popen([binary, "serve", "--config", cfg], env={**os.environ, "VAKT_LOG": "warn"})
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 18471); c.request("GET", "/readyz"); r = c.getresponse(); r.read()
        if r.status == 200: break
    except OSError: pass
    time.sleep(0.1)
def body(i):
    return json.dumps({"matchers": ['service="svc%d"' % i, 'team=~"t%d|x"' % (i % 97)], "duration_secs": 86400, "created_by": "bench", "comment": "c"})
def make(rng):
    c = http.client.HTTPConnection("127.0.0.1", 18471)
    for i in rng:
        c.request("POST", "/api/v1/silences", body(i), {"content-type": "application/json"}); r = c.getresponse(); r.read()
        assert r.status == 201, r.status
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(make, [range(k, n, 8) for k in range(8)]))
fill = time.time() - t0
c = http.client.HTTPConnection("127.0.0.1", 18471)
times = []
for i in range(n, n + 200):
    t = time.perf_counter()
    c.request("POST", "/api/v1/silences", body(i), {"content-type": "application/json"}); r = c.getresponse(); r.read()
    times.append((time.perf_counter() - t) * 1000)
    assert r.status == 201
times.sort()
rss = [l for l in open("/proc/%d/status" % p.pid) if l.startswith("VmRSS")][0].split()[1]
print("silences=%d fill=%.1fs create p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms rss=%sKB" % (n, fill, statistics.median(times), times[179], times[197], times[-1], rss))
p.terminate(); p.wait()
