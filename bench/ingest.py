"""Event ingestion benchmark: the real API under gunicorn vs. a raw psycopg baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fb_api_bench \\
    SECRET_KEY=... ALLOWED_HOSTS=127.0.0.1 \\
    python bench/ingest.py --events 20000 --single-events 3000 --concurrency 8 --workers 3 --threads 4 \\
        [--modes new twice race] [--preload 10000000]

What runs, all on loopback:
* gunicorn (``--workers`` gthread workers with ``--threads`` each; ``--threads 1`` for
  sync workers) serving ``billing_project.wsgi`` on an
  ephemeral port (a socket bound to port 0 and handed over as ``fd://``);
* ``--concurrency`` client processes, each a closed loop of HTTP/1.1 requests on a
  kept-alive raw socket (a minimal client: it shares the CPUs with the server, so it
  should cost little), posting ``POST /api/v1/events/batch`` (100 events) and then
  ``POST /api/v1/events`` (single events);
* the baseline: the same number of processes storing the same kind of rows with psycopg,
  the least SQL that does it (keys claimed with ``INSERT … ON CONFLICT DO NOTHING`` in
  the key table, the claimed events inserted, one statement) — one multi-row statement +
  commit per 100 rows, and one statement + commit per single row;
* each in up to three modes (``--modes``): every event new; every request sent twice in
  a row (the second an identical resend, as a client retrying after a timeout); and
  pairs of clients sending the same requests at the same time (a retry racing its
  original). The resend modes are compared with the all-new run of the same invocation;
* with ``--preload N``: a second database (``<DATABASE_URL>_preloaded``) holding at least
  N events (stored straight in SQL the first time, kept for later runs) and a second
  gunicorn on it; every phase runs on the small database, then on the big one, so that
  the ratio big/small is measured under the same machine load;
* the RSS of every gunicorn worker, sampled every second.

Prints events/s, p50/p99 per request and the API/baseline ratio. Timings are figures
to read, never assertions. The machine may be shared: note it with the figures.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fb_api_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/6")

from bench._database import ensure_database  # noqa: E402


# --------------------------------------------------------------------------- setup


def prepare(run_id: str, subscriptions: int = 1) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from identity import keys
    from identity.models import Service
    from metering import services

    service = Service.objects.create(code=f"bench-{run_id}", name="Ingest benchmark")
    api_key = keys.issue_key(service=service, name="bench").plaintext
    metric = services.create_billable_metric(service=service, data={
        "name": "CPU seconds", "code": "cpu_seconds", "aggregation_type": "sum_agg", "field_name": "cpu_seconds"})
    services.create_plan(service=service, data={
        "name": "Bench", "code": "bench", "interval": "monthly", "amount_cents": 1000, "amount_currency": "CAD",
        "charges": [{"billable_metric_id": metric.id, "charge_model": "standard",
                     "properties": {"amount": "0.0075", "unit_batch": 3600}}]})
    subscription_ids = []
    for n in range(subscriptions):
        subscription = services.create_subscription(service=service, data={
            "external_customer_id": f"bench-customer-{n}", "plan_code": "bench",
            "external_id": f"bench-sub-{n}"}).subscription
        subscription_ids.append(str(subscription.id))
    return {"api_key": api_key, "service_id": service.id, "subscription_ids": subscription_ids}


# --------------------------------------------------------------------------- server


def start_gunicorn(workers: int, threads: int = 1, database_url: str | None = None) -> tuple[subprocess.Popen, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    # Plain HTTP on loopback (no HTTPS redirect), and the server's capacity is what is
    # measured, not the per-key rate limit.
    env = {"SECURE_SSL_REDIRECT": "0", "API_THROTTLE_INGEST_RATE": "off", "API_THROTTLE_MANAGEMENT_RATE": "off",
           **os.environ, "DJANGO_DEBUG": "0", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO_ROOT)}
    if database_url:
        env["DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "billing_project.wsgi", "--bind", f"fd://{sock.fileno()}",
         "--workers", str(workers), "--worker-class", "gthread" if threads > 1 else "sync",
         "--threads", str(threads), "--backlog", "1024", "--log-level", "warning",
         "--timeout", "120"],
        cwd=REPO_ROOT, env=env, pass_fds=[sock.fileno()],
    )
    sock.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, master: int) -> None:
        super().__init__(daemon=True)
        self.master = master
        self.samples: dict[int, list[int]] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for pid in worker_pids(self.master):
                if (value := rss_kib(pid)) is not None:
                    self.samples.setdefault(pid, []).append(value)
            self.stop_event.wait(1.0)


# --------------------------------------------------------------------------- load


SUBSCRIPTIONS = 1  # set from --subscriptions before the client processes fork
BENCH_NOW = 0  # the events' timestamp, set before the client processes fork


def event_body(prefix: str, i: int, now: int) -> dict:
    return {"transaction_id": f"{prefix}-{i}", "external_subscription_id": f"bench-sub-{i % SUBSCRIPTIONS}",
            "code": "cpu_seconds",
            "timestamp": str(now), "precise_total_amount_cents": None, "properties": {"cpu_seconds": i % 100}}


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client on a raw socket.

    The load generators share the machine's cores with the server under test, so they
    should cost as little CPU as possible: ``http.client`` spends several times more per
    request than this (header objects, buffered file wrappers). Reconnects when the
    server closes the connection (sync workers do after every request).
    """

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.head = (f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {api_key}\r\n"
                     "Content-Type: application/json\r\n").encode()
        self.sock: socket.socket | None = None
        self.buffer = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            path.encode(), self.head, len(body), body))
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        header, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
        lines = header.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if fields.get("transfer-encoding", "").lower() == "chunked":
            payload = self._read_chunked()
        else:
            payload = self._read_exactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            self.sock.close()
            self.sock = None
        return status, payload

    def _read_exactly(self, length: int) -> bytes:
        while len(self.buffer) < length:
            self._receive()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        return data

    def _read_line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._receive()
        line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
        return line

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self._read_line().split(b";", 1)[0], 16):
            parts.append(self._read_exactly(size))
            self._read_line()
        while self._read_line():  # trailers, up to the blank line
            pass
        return b"".join(parts)

    def _receive(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-response")
        self.buffer += chunk


def api_client_loop(args: tuple) -> list[float]:
    port, api_key, kind, prefix, start, count, batch, *rest = args
    sends = rest[0] if rest else 1  # 2: every request is sent again at once (a client retrying)
    client = KeepAliveClient(port, api_key)
    # One instant for every client: racing clients must send identical payloads.
    now = BENCH_NOW or int(time.time())
    latencies: list[float] = []
    i = start
    while i < start + count:
        n = min(batch, start + count - i)
        if kind == "batch":
            body = json.dumps({"events": [event_body(prefix, j, now) for j in range(i, i + n)]}).encode()
            path = "/api/v1/events/batch"
        else:
            body = json.dumps({"event": event_body(prefix, i, now)}).encode()
            path, n = "/api/v1/events", 1
        for _ in range(sends):
            began = time.perf_counter()
            status, payload = client.post(path, body)
            latencies.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"{status}: {payload[:300]!r}")
        i += n
    return latencies


def baseline_loop(args: tuple) -> list[float]:
    import psycopg
    from psycopg.types.json import Jsonb

    url, meta, kind, prefix, start, count, batch = args
    now = time.time()  # ok-float (wall clock for a benchmark row)
    latencies: list[float] = []
    # The least SQL that stores the same rows: claim the keys in the key table (the
    # uniqueness rule), then insert the events of the claimed keys, in one statement.
    sql_head = ("WITH input (service_id, subscription_id, external_subscription_id, code, transaction_id,"
                " ts, properties, value, payload_hash) AS (VALUES ")
    row_sql = "(%s, %s::uuid, %s, %s, %s, to_timestamp(%s), %s::jsonb, %s::numeric, %s)"
    tail = ("), k AS (INSERT INTO metering_usageeventkey (service_id, transaction_id, external_subscription_id,"
            " event_id, \"timestamp\", payload_hash) SELECT service_id, transaction_id, external_subscription_id,"
            " nextval('metering_usageevent_id_seq'), ts, payload_hash FROM input ON CONFLICT DO NOTHING"
            " RETURNING transaction_id, external_subscription_id, event_id)"
            " INSERT INTO metering_usageevent (id, service_id, created_at, subscription_id, external_subscription_id,"
            " code, transaction_id, \"timestamp\", properties, value, precise_total_amount_cents, payload_hash)"
            " SELECT k.event_id, i.service_id, now(), i.subscription_id, i.external_subscription_id, i.code,"
            " i.transaction_id, i.ts, i.properties, i.value, NULL, i.payload_hash FROM k JOIN input i"
            " ON i.transaction_id = k.transaction_id AND i.external_subscription_id = k.external_subscription_id")
    with psycopg.connect(url) as conn:
        i = start
        while i < start + count:
            n = min(batch if kind == "batch" else 1, start + count - i)
            params: list = []
            for j in range(i, i + n):
                sub = j % len(meta["subscription_ids"])
                params += [meta["service_id"], meta["subscription_ids"][sub], f"bench-sub-{sub}", "cpu_seconds",
                           f"{prefix}-{j}", now, Jsonb({"cpu_seconds": j % 100}), j % 100, "0" * 64]
            began = time.perf_counter()
            conn.execute(sql_head + ",".join([row_sql] * n) + tail, params)
            conn.commit()
            latencies.append(time.perf_counter() - began)
            i += n
    return latencies


def run_phase(label: str, target, jobs: list[tuple], events: int) -> dict:
    began = time.perf_counter()
    with mp.get_context("fork").Pool(len(jobs)) as pool:
        results = pool.map(target, jobs)
    elapsed = time.perf_counter() - began
    latencies = sorted(value for chunk in results for value in chunk)
    figures = {
        "label": label, "events": events, "seconds": elapsed, "events_per_s": events / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "requests": len(latencies),
    }
    print(f"  {label:<28} {figures['events_per_s']:>10,.0f} events/s   p50 {figures['p50_ms']:7.1f} ms   "
          f"p99 {figures['p99_ms']:7.1f} ms   ({events:,} events, {len(latencies):,} requests, {elapsed:.1f} s)",
          flush=True)
    return figures


def split(total: int, parts: int, step: int) -> list[tuple[int, int]]:
    chunks = max(1, total // step)
    per = [chunks // parts + (1 if k < chunks % parts else 0) for k in range(parts)]
    result, offset = [], 0
    for k, n in enumerate(per):
        count = n * step if k < parts - 1 else total - offset
        result.append((offset, count))
        offset += count
    return [r for r in result if r[1] > 0]


def prepare_elsewhere(url: str, run_id: str, subscriptions: int) -> dict:
    """``prepare`` on another database (Django is set up once per process)."""
    result = subprocess.run([sys.executable, __file__, "--prepare-only", run_id, str(subscriptions)],
                            cwd=REPO_ROOT, env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO_ROOT)},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def stored_events(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM metering_usageevent").fetchone()[0]


_PRELOAD_SQL = (
    "WITH stored AS ("
    " INSERT INTO metering_usageevent (service_id, created_at, subscription_id, external_subscription_id,"
    " code, transaction_id, \"timestamp\", properties, value, payload_hash)"
    " SELECT %(service)s, now(), (%(subs)s::uuid[])[1 + g %% %(n)s], 'bench-sub-' || (g %% %(n)s),"
    " 'cpu_seconds', %(prefix)s || g, now() - (g %% 7776000) * interval '1 second',"
    " jsonb_build_object('cpu_seconds', g %% 100), g %% 100, md5(g::text) || md5(g::text)"
    " FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g"
    " RETURNING service_id, transaction_id, external_subscription_id, id, \"timestamp\", payload_hash)"
    " INSERT INTO metering_usageeventkey (service_id, transaction_id, external_subscription_id, event_id,"
    " \"timestamp\", payload_hash)"
    " SELECT service_id, transaction_id, external_subscription_id, id, \"timestamp\", payload_hash FROM stored"
)


def preload_chunk(job: tuple) -> int:
    """Store one chunk of events with their keys, in one statement (the keys from the
    inserted rows' RETURNING), so a chunk costs the same on a 90M-row table as on an empty one."""
    import psycopg

    url, params = job
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_PRELOAD_SQL, params)
    return params["last"] - params["first"] + 1


def preload(meta: dict, rows: int, *, url: str, chunk: int = 1_000_000, processes: int = 2) -> float:
    """Store ``rows`` events (and their keys) straight in SQL, spread over the last 90
    days (so over the current and previous monthly partitions) and over the bench's
    subscriptions, in ``processes`` connections at once; returns the seconds it took."""
    import psycopg

    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        # The months the rows fall in get their partitions first (as the migration and
        # beat would have made them), rather than all landing in DEFAULT.
        for back in range(4):
            month = conn.execute("SELECT date_trunc('month', now() AT TIME ZONE 'UTC') - %s * interval '1 month'",
                                 [back]).fetchone()[0]
            name = f"metering_usageevent_p{month:%Y_%m}"
            if not conn.execute("SELECT to_regclass(%s)", [name]).fetchone()[0]:
                conn.execute(f"CREATE TABLE {name} PARTITION OF metering_usageevent FOR VALUES FROM "
                             f"('{month:%Y-%m-%d} 00:00:00+00') TO ('{month:%Y-%m-%d} 00:00:00+00'::timestamptz"
                             " + interval '1 month')")
    # A prefix of its own per preload, so a preload topping up an earlier one never
    # collides with its transaction ids.
    prefix = f"preload-{uuid.uuid4().hex[:4]}-"
    jobs = [(url, {"service": meta["service_id"], "subs": meta["subscription_ids"], "n": len(meta["subscription_ids"]),
                   "first": first, "last": min(rows, first + chunk) - 1, "prefix": prefix})
            for first in range(0, rows, chunk)]
    stored = 0
    # Spawned, not forked: preload is also called from a process that has used Celery (the
    # test suite), and a forked child runs kombu's after-fork hook, which closes the
    # inherited Redis channel by reading a BRPOP answer from the parent's socket forever.
    with mp.get_context("spawn").Pool(processes) as pool:
        for count in pool.imap_unordered(preload_chunk, jobs):
            stored += count
            print(f"  preloaded {stored:,} of {rows:,} events ({time.perf_counter() - began:.0f} s)", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE metering_usageevent")
        conn.execute("VACUUM ANALYZE metering_usageeventkey")
    return time.perf_counter() - began


MODES = ("new", "twice", "race")
MODE_TITLES = {"new": "all new", "twice": "every request sent twice", "race": "a retry racing its original"}


def run_modes(targets: list[tuple[str, int, dict]], run_id: str, options: argparse.Namespace) -> dict:
    """Batch and single events in each mode, on each target (label, port, meta) in turn
    (so that a change of the machine's load hits them alike); returns
    {(label, kind, mode): figures}."""
    single_concurrency = options.single_concurrency or options.concurrency
    results = {}
    for mode in options.modes:
        for kind, total, concurrency, step in (("batch", options.events, options.concurrency, options.batch_size),
                                               ("single", options.single_events, single_concurrency, 1)):
            for number, (table, port, meta) in enumerate(targets):
                prefix = f"{kind[0]}{mode}{number}{run_id}"
                if mode == "race":
                    # Pairs of clients send the same requests at the same time.
                    chunks = split(total, max(1, concurrency // 2), step)
                    jobs = [(port, meta["api_key"], kind, prefix, start, count, step, 1)
                            for start, count in chunks for _ in range(2)]
                    sent = 2 * total
                else:
                    sends = 2 if mode == "twice" else 1
                    jobs = [(port, meta["api_key"], kind, prefix, start, count, step, sends)
                            for start, count in split(total, concurrency, step)]
                    sent = sends * total
                label = f"{table}: {kind} x{step if kind == 'batch' else 1}, {MODE_TITLES[mode]}"
                results[(table, kind, mode)] = run_phase(label, api_client_loop, jobs, sent)
    for table, _, _ in targets:
        for kind in ("batch", "single"):
            base = results.get((table, kind, "new"))
            for mode in options.modes:
                if mode == "new" or base is None:
                    continue
                figures = results[(table, kind, mode)]
                goal_p99 = 150 if kind == "batch" else 50
                print(f"  {table}: {kind} {MODE_TITLES[mode]}: "
                      f"{figures['events_per_s'] / base['events_per_s']:.2f}x the all-new throughput (goal >= 0.8x), "
                      f"p99 {figures['p99_ms']:.1f} ms (goal <= {goal_p99} ms; all new {base['p99_ms']:.1f} ms)",
                      flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events sent in batches (default 20,000)")
    parser.add_argument("--single-events", type=int, default=3_000, help="events sent one per request")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8, help="client processes (batches)")
    parser.add_argument("--single-concurrency", type=int, default=None,
                        help="client processes for single events (default: --concurrency)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (>= 2)")
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per worker (> 1: gthread workers, overlapping database waits)")
    parser.add_argument("--subscriptions", type=int, default=50,
                        help="events are spread over this many subscriptions (1 = one hot row)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="new: every event new; twice: every request sent twice in a row (the second is "
                             "an identical resend); race: two clients send the same requests at the same "
                             "time (a retry racing its original). Default: all three")
    parser.add_argument("--preload", type=int, default=0, metavar="N",
                        help="also measure against a second database, <DATABASE_URL>_preloaded, holding at "
                             "least N events (stored straight in SQL if missing; kept for the next run), "
                             "phases alternating between the two: ingest on a big table vs a small one")
    parser.add_argument("--prepare-only", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--skip-baseline", action="store_true")
    options = parser.parse_args()
    if options.prepare_only:
        print(json.dumps(prepare(options.prepare_only[0], int(options.prepare_only[1]))))
        return

    ensure_database(os.environ["DATABASE_URL"])
    run_id = uuid.uuid4().hex[:8]
    global SUBSCRIPTIONS, BENCH_NOW
    SUBSCRIPTIONS = options.subscriptions
    meta = prepare(run_id, options.subscriptions)
    from django.db import connections

    connections.close_all()
    targets_meta = [("small table", os.environ["DATABASE_URL"], meta)]
    if options.preload:
        big_url = os.environ["DATABASE_URL"] + "_preloaded"
        ensure_database(big_url)
        big_meta = prepare_elsewhere(big_url, run_id, options.subscriptions)
        present = stored_events(big_url)
        if present < options.preload:
            seconds = preload(big_meta, options.preload - present, url=big_url)
            print(f"  preload: {options.preload - present:,} events and keys stored in {seconds:.0f} s", flush=True)
        present = stored_events(big_url)
        targets_meta.append((f"{present:,}-event table", big_url, big_meta))
    small_events = stored_events(os.environ["DATABASE_URL"])
    BENCH_NOW = int(time.time()) + 1  # the next whole second: after every subscription's start
    time.sleep(1)
    servers = [start_gunicorn(options.workers, options.threads, url) for _, url, _ in targets_meta]
    server, port = servers[0]
    sampler = RssSampler(server.pid)
    sampler.start()
    kind = f"gthread x{options.threads}" if options.threads > 1 else "sync"
    print(f"ingest benchmark: gunicorn {options.workers} {kind} workers per database, "
          f"{options.concurrency} client processes, {options.subscriptions} subscriptions, "
          f"{os.cpu_count()} CPUs (shared machine: compare figures within one run); small table: "
          f"{small_events:,} events", flush=True)
    figures = []
    targets = [(label, srv[1], target_meta) for (label, _, target_meta), srv in zip(targets_meta, servers)]
    try:
        time.sleep(1.5)
        # Warm-up (not measured): every worker imports, resolves URLs and connects once.
        for _, target_port, target_meta in targets:
            warm = [(target_port, target_meta["api_key"], "batch", f"w{run_id}-{k}", 0, 10, 10)
                    for k in range(4 * options.workers)]
            with mp.get_context("fork").Pool(min(len(warm), options.concurrency)) as pool:
                pool.map(api_client_loop, warm)
        rss_start = {pid: rss_kib(pid) for pid in worker_pids(server.pid)}
        results = run_modes(targets, run_id, options)
        if len(targets) > 1:
            small, big = targets[0][0], targets[1][0]
            for kind_ in ("batch", "single"):
                for mode in options.modes:
                    few, many = results[(small, kind_, mode)], results[(big, kind_, mode)]
                    print(f"  {big} vs {small}: {kind_} {MODE_TITLES[mode]}: "
                          f"{many['events_per_s'] / few['events_per_s']:.2f}x throughput (goal >= 0.8x), "
                          f"p99 {many['p99_ms']:.1f} ms vs {few['p99_ms']:.1f} ms", flush=True)
        rss_end = {pid: rss_kib(pid) for pid in worker_pids(server.pid)}
    finally:
        sampler.stop_event.set()
        for process, _ in servers:
            process.send_signal(signal.SIGTERM)
        for process, _ in servers:
            process.wait(timeout=30)
    empty = {(kind_, mode): value for (table, kind_, mode), value in results.items() if table == "small table"}
    if not options.skip_baseline and ("batch", "new") in empty:
        url = os.environ["DATABASE_URL"]
        single_concurrency = options.single_concurrency or options.concurrency
        jobs = [(url, meta, "batch", f"rb{run_id}", start, count, options.batch_size)
                for start, count in split(options.events, options.concurrency, options.batch_size)]
        figures.append(run_phase(f"psycopg batch x{options.batch_size}", baseline_loop, jobs, options.events))
        jobs = [(url, meta, "single", f"rs{run_id}", start, count, 1)
                for start, count in split(options.single_events, single_concurrency, 1)]
        figures.append(run_phase("psycopg single", baseline_loop, jobs, options.single_events))
        print(f"  ratio API/baseline (all new): batch "
              f"{empty[('batch', 'new')]['events_per_s'] / figures[0]['events_per_s']:.2f}, "
              f"single {empty[('single', 'new')]['events_per_s'] / figures[1]['events_per_s']:.2f}")

    print("  web worker RSS (KiB): " + ", ".join(
        f"pid {pid}: start {rss_start.get(pid)} end {rss_end.get(pid)} max {max(sampler.samples.get(pid, [0]))}"
        for pid in rss_start))
    print("  goals: batch >= 10,000 events/s and >= 0.5x baseline; single >= 1,000 events/s, p99 <= 50 ms; "
          "resends and races >= 0.8x the all-new run, p99 <= 50 ms single / 150 ms batch")


if __name__ == "__main__":
    main()
