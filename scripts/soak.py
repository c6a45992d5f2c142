#!/usr/bin/env python3
"""Soak with faults (issue 15): `mpdr monitor` with 16 accelerated file streams (four per
machine type, each looping a recording whose second half has a developing fault, so alarms
raise and clear all the time) delivering to a real webhook receiver and a real mosquitto
broker; the receiver and the broker are stopped and restarted every few minutes, the daemon
is killed with SIGKILL midway and started again; with --disk-full (issue 25; root, for the
tmpfs) the state folder is a 1 GiB tmpfs that is filled to the last byte for 60 s every 5
minutes (never across the kill). At the end every `raised` event the detector decided must be
in the outbox and have reached both sinks at least once, and resident memory after warm-up
must stay flat. Usage: scripts/soak.py [--minutes 60] [--out target/soak] [--disk-full].
Summary: <out>/soak.json.
"""
import argparse, http.server, json, os, shutil, signal, socket, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULTS = {"fan": "imbalance", "pump": "cavitation", "valve": "leak", "slider": "rail-damage"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook receiver that can be stopped and started on its port."""

    def __init__(self, port):
        self.port, self.ids, self.requests, self.server = port, set(), 0, None
        self.lock = threading.Lock()

    def start(self):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ev = json.loads(body)
                with outer.lock:
                    outer.requests += 1
                    if ev.get("kind") == "raised":
                        outer.ids.add(ev["id"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None


def metric(port, name):
    try:
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except Exception:
        return None
    total = None
    for line in text.splitlines():
        if line.startswith(name):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "soak"))
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--disk-full", action="store_true", help="fill the state folder (a tmpfs) now and then")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    mpdr = os.path.join(out, "mpdr")
    shutil.copy(os.path.join(ROOT, "target", "release", "mpdr"), mpdr)
    log = open(os.path.join(out, "soak.log"), "w")

    def note(msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    # Recordings: 60 s normal, then the machine's fault ramping up over 20 s, for 60 s.
    for m, fault in FAULTS.items():
        subprocess.run([mpdr, "synth", "--machine", m, "--instance", "1000", "--seed", "77", "--seconds", "120",
                        "--fault", fault, "--fault-at", "60", "--ramp", "20", "--out", f"{out}/{m}.wav"],
                       check=True, stdout=subprocess.DEVNULL)
    web_port, mqtt_port, http_port = free_port(), free_port(), free_port()
    conf = os.path.join(out, "mosquitto.conf")
    with open(conf, "w") as f:
        # `user root`: started as root, mosquitto would drop to its own user, which cannot write
        # the persistence folder — sessions (and what is queued for them) would not survive
        # its restarts. Ignored when not root.
        f.write(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {out}/\nuser root\n")
    mosq_bin = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    state = os.path.join(out, "state")
    os.makedirs(state)
    if args.disk_full:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "soak-state", state], check=True)
    filler = os.path.join(state, "filler")

    def fill():
        with open(filler, "wb") as f:
            block = b"\0" * (1 << 20)
            try:
                while True:
                    f.write(block)
                    f.flush()
            except OSError:
                pass
        # the last bytes too
        try:
            with open(filler, "ab") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass

    def broker():
        return subprocess.Popen([mosq_bin, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def subscriber():
        f = open(os.path.join(out, "mqtt.txt"), "a")
        return subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mqtt_port), "-t", "soak/+/raised",
                                 "-q", "1", "-c", "-i", "soak-subscriber", "-v"], stdout=f, stderr=subprocess.DEVNULL)

    cfg = os.path.join(out, "monitor.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{http_port}"\n[state]\ndir = "{out}/state"\nmax_events = 1000000\n')
        for i in range(16):
            m = list(FAULTS)[i % 4]
            f.write(f'[[stream]]\nname = "{m}-{i}"\nmodel = "{ROOT}/models/{m}"\n'
                    f'source = {{ type = "file", path = "{out}/{m}.wav", realtime = true, speed = {args.speed}, loop = true }}\n'
                    f'detect = {{ window_s = 5.0, hop_s = 1.0, on_delay_s = 3.0, off_delay_s = 3.0, threshold = "model" }}\n')
        f.write(f'[[sink]]\ntype = "webhook"\nname = "hook"\nurl = "http://127.0.0.1:{web_port}/alarms"\ntimeout_s = 5\n'
                f'retry = {{ initial_s = 0.5, max_s = 5.0, max_age_s = 86400.0 }}\n')
        f.write(f'[[sink]]\ntype = "mqtt"\nname = "broker"\nhost = "127.0.0.1"\nport = {mqtt_port}\nclient_id = "mpdr-soak"\n'
                f'topic = "soak/{{stream}}/{{kind}}"\ntimeout_s = 5\nretry = {{ initial_s = 0.5, max_s = 5.0, max_age_s = 86400.0 }}\n')
    subprocess.run([mpdr, "validate", "--config", cfg], check=True)

    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1", MPDR_LOG="warn")

    def daemon():
        return subprocess.Popen([mpdr, "--log-json", "monitor", "--config", cfg], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(out, "daemon.log"), "a"))

    recv = Receiver(web_port)
    recv.start()
    mosq = broker()
    time.sleep(1)
    sub = subscriber()
    d = daemon()
    t0 = time.time()
    end = t0 + args.minutes * 60
    kill_at = t0 + args.minutes * 30
    killed = False
    samples = []  # (t_s, run, rss_kb)
    run = 0
    next_web, next_mqtt, next_rss = t0 + 120, t0 + 200, t0
    web_down_until = mqtt_down_until = None
    outages = {"webhook": 0, "broker": 0, "disk_full": 0}
    next_fill, full_until = t0 + 150, None
    decided = {0: 0.0, 1: 0.0}  # raised events the detector decided, per run (metrics)
    held_max = 0.0
    while time.time() < end:
        now = time.time()
        if now >= next_rss:
            r = rss_kb(d.pid)
            if r:
                samples.append((round(now - t0, 1), run, r))
            next_rss = now + 30
        if web_down_until is None and now >= next_web:
            recv.stop(); web_down_until = now + 60; outages["webhook"] += 1
            note("webhook receiver stopped")
        elif web_down_until is not None and now >= web_down_until:
            recv.start(); web_down_until = None; next_web = now + 180
            note("webhook receiver started")
        if mqtt_down_until is None and now >= next_mqtt:
            mosq.terminate(); mosq.wait(); mqtt_down_until = now + 45; outages["broker"] += 1
            note("broker stopped")
        elif mqtt_down_until is not None and now >= mqtt_down_until:
            mosq = broker(); mqtt_down_until = None; next_mqtt = now + 240
            time.sleep(1)
            if sub.poll() is not None:
                sub = subscriber()
            note("broker started")
        if args.disk_full and full_until is None and now >= next_fill and not (kill_at - 90 < now < kill_at + 30):
            fill(); full_until = now + 60; outages["disk_full"] += 1
            note("state folder filled")
        elif full_until is not None and now >= full_until:
            os.remove(filler); full_until = None; next_fill = now + 240
            note("state folder freed")
        if full_until is not None:
            held_max = max(held_max, metric(http_port, "mpdr_events_held") or 0.0)
        v = metric(http_port, 'mpdr_events_total{kind="raised"}')
        if v is not None:
            decided[run] = max(decided[run], v)
        if not killed and now >= kill_at:
            d.send_signal(signal.SIGKILL); d.wait()
            note("daemon killed with SIGKILL")
            time.sleep(5)
            d = daemon(); run = 1; killed = True
            note("daemon restarted")
        if d.poll() is not None:
            note(f"daemon exited on its own with {d.returncode}")
            break
        time.sleep(1)

    # Everything up again; stop the streams from raising new alarms is not possible without a
    # reload, so let the sinks drain with both receivers up, then stop the daemon.
    if web_down_until is not None:
        recv.start()
    if mqtt_down_until is not None:
        mosq = broker(); time.sleep(1)
    if sub.poll() is not None:
        sub = subscriber()
    if full_until is not None:
        os.remove(filler); full_until = None
    time.sleep(10)
    v = metric(http_port, 'mpdr_events_total{kind="raised"}')
    if v is not None:
        decided[run] = max(decided[run], v)
    dropped = metric(http_port, "mpdr_events_dropped_total")
    note("draining")
    d.send_signal(signal.SIGTERM)
    try:
        d.wait(timeout=120)
    except subprocess.TimeoutExpired:
        d.kill(); d.wait()
    # Drain what is left through a daemon without streams? The outbox is drained by a short
    # run with the same sinks and no new alarms: the same config, streams paused at speed 0.01.
    drain_cfg = os.path.join(out, "drain.toml")
    text = open(cfg).read().replace(f"speed = {args.speed}", "speed = 0.01")
    open(drain_cfg, "w").write(text)
    d2 = subprocess.Popen([mpdr, "monitor", "--config", drain_cfg], env=env, stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(out, "drain.log"), "w"))
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(3)
        pending = metric(http_port, "mpdr_sink_pending")
        if pending == 0:
            break
    d2.send_signal(signal.SIGTERM); d2.wait(timeout=120)
    time.sleep(3)
    sub.terminate(); sub.wait()
    mosq.terminate(); mosq.wait()
    recv.stop()

    listed = subprocess.run([mpdr, "alarms", "--state-dir", f"{out}/state", "list", "--json", "--limit", "10000000"],
                            capture_output=True, text=True, check=True).stdout
    raised = {e["id"] for e in map(json.loads, listed.splitlines()) if e.get("kind") == "raised"}
    mqtt_ids = set()
    for line in open(os.path.join(out, "mqtt.txt")):
        try:
            mqtt_ids.add(json.loads(line.split(" ", 1)[1])["id"])
        except (ValueError, IndexError, KeyError):
            pass

    def growth(run_):
        rs = [(t, r) for t, k, r in samples if k == run_]
        if len(rs) < 8:
            return None
        start = rs[0][0] + 300  # warm-up: 5 minutes
        warm = [r for t, r in rs if t >= start]
        if len(warm) < 4:
            return None
        q = max(1, len(warm) // 4)
        first, last = sum(warm[:q]) / q, sum(warm[-q:]) / q
        half = len(warm) // 2
        peak1, peak2 = max(warm[:half]), max(warm[half:])
        return {"first_quarter_kb": first, "last_quarter_kb": last, "growth_pct": 100.0 * (last - first) / first,
                "peak_first_half_kb": peak1, "peak_second_half_kb": peak2,
                "peak_growth_pct": 100.0 * (peak2 - peak1) / peak1}

    summary = {
        "minutes": args.minutes, "streams": 16, "speed": args.speed,
        "outages": outages, "kill9": killed,
        "raised": len(raised),
        "raised_decided": decided[0] + decided[1], "events_held_max": held_max, "events_dropped": dropped,
        "delivered_webhook": len(raised & recv.ids), "delivered_mqtt": len(raised & mqtt_ids),
        "missing_webhook": sorted(raised - recv.ids)[:20], "missing_mqtt": sorted(raised - mqtt_ids)[:20],
        "webhook_requests": recv.requests,
        "rss": {"before_kill": growth(0), "after_restart": growth(1)},
        "rss_samples": samples,
    }
    json.dump(summary, open(os.path.join(out, "soak.json"), "w"), indent=1)
    short = {k: v for k, v in summary.items() if k != "rss_samples"}
    note(json.dumps(short))
    if args.disk_full:
        subprocess.run(["umount", state])
    ok = raised and summary["delivered_webhook"] == len(raised) and summary["delivered_mqtt"] == len(raised)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
