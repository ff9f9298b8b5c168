"""Celery (Redis broker and result backend) and Dask distributed doing the cluster rows.

Usage: python3 cluster_bench.py celery|dask LATENCY TRIVIAL CPU_TASKS CPU_MS HOSTS
       (HOSTS: comma-separated worker counts in rising order, e.g. 1,2,4)

Starts its own servers and workers on loopback, in a temp dir, and kills them at the end
(also on error), as the wasmp side does with nats-server and `wasmp serve`:

- celery: `redis-server` on a free loopback port (no persistence) as broker and result
  backend; workers `celery worker --pool prefork --concurrency 1`, one per "host".
- dask: `dask scheduler` on loopback port 0; workers `dask worker --nthreads 1
  --nworkers 1 --no-nanny`, one process with one thread per "host".

Workers are added one by one up to each count of HOSTS. With 2 workers (or the largest
count below it): LATENCY trivial tasks one at a time (submit -> result), then TRIVIAL
trivial tasks submitted at once and all awaited, with the CPU time the broker/scheduler,
the workers and this client spent on them. At each count: CPU_TASKS tasks of a pure-Python
loop calibrated to CPU_MS milliseconds.

Prints JSON: {"latency": [s, ...], "trivial": s, "cpu": {"1": s, ...}, "cpu_task": s,
"cpu_rounds": n, "server_cpu": s, "workers_cpu": s, "client_cpu": s, "version": "..."},
or {"skipped": "why"} when the system is not installed.
"""
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRIVIAL_HOSTS = 2


def square(x):
    return x * x


def cpu(rounds):
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for i in range(rounds):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        x = (x + i) & mask
    return x


# The Celery app, importable by the workers as `cluster_bench` (task names fixed so that
# this script, run as __main__, and the workers agree).
try:
    from celery import Celery

    app = Celery("cluster_bench")
    app.conf.update(
        broker_url=os.environ.get("CLUSTER_BENCH_REDIS", "redis://127.0.0.1:1/0"),
        result_backend=os.environ.get("CLUSTER_BENCH_REDIS", "redis://127.0.0.1:1/0"),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    celery_square = app.task(name="bench.square")(square)
    celery_cpu = app.task(name="bench.cpu")(cpu)
except ImportError:
    app = None


def calibrate(ms):
    """Rounds of `cpu` that take `ms` milliseconds in this interpreter."""
    probe = 20_000
    while True:
        start = time.perf_counter()
        cpu(probe)
        took = time.perf_counter() - start
        if took > 0.05:
            break
        probe *= 2
    rounds = int(probe * (ms / 1e3) / took)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        cpu(rounds)
        samples.append(time.perf_counter() - start)
    samples.sort()
    return rounds, samples[len(samples) // 2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """In the child: SIGKILL when this script dies, and a process group of its own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Processes:
    """Everything this script started; all killed (whole process groups) and reaped."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.children = []

    def start(self, args, name, env=None):
        log = open(os.path.join(self.tmp, f"{name}.log"), "wb")
        child = subprocess.Popen(
            args,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.children.append((child, name))
        return child

    def log(self, name):
        try:
            with open(os.path.join(self.tmp, f"{name}.log"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def check(self):
        for child, name in self.children:
            if child.poll() is not None:
                raise SystemExit(f"{name} exited ({child.returncode}): {self.log(name)}")

    def close(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for child, _ in self.children:
                try:
                    os.killpg(child.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            for child, _ in self.children:
                try:
                    child.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        # Group members (prefork children) a SIGKILLed leader left behind.
        for child, _ in self.children:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def tree_cpu(pids):
    """User+system seconds of these processes and all their descendants, live or reaped."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
    return total


def client_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def wait_for(what, ready, procs, timeout=60):
    deadline = time.monotonic() + timeout
    while not ready():
        procs.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class CelerySystem:
    def __init__(self, procs):
        import celery

        self.version = f"Celery {celery.__version__}"
        self.procs = procs
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        server = procs.start(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", procs.tmp, "--protected-mode", "yes"],
            "redis",
        )
        self.server_pid = server.pid

        def redis_up():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for("redis-server", redis_up, procs)
        app.conf.update(broker_url=url, result_backend=url)
        self.env = dict(os.environ, CLUSTER_BENCH_REDIS=url)
        self.workers = []

    def add_worker(self):
        n = len(self.workers) + 1
        child = self.procs.start(
            [sys.executable, "-m", "celery", "-A", "cluster_bench", "worker", "--pool",
             "prefork", "--concurrency", "1", "-n", f"w{n}@bench", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-l", "warning"],
            f"celery-w{n}",
            self.env,
        )
        self.workers.append(child.pid)

        def all_up():
            replies = app.control.ping(timeout=0.5) or []
            return len(replies) >= len(self.workers)

        wait_for(f"celery worker {n}", all_up, self.procs)
        # Each worker's first task (imports, connections) before anything is timed.
        for r in [celery_square.delay(1) for _ in range(4 * len(self.workers))]:
            r.get(timeout=60)

    def one(self, x):
        return celery_square.delay(x).get(timeout=60)

    # A ResultSet waits with the Redis backend's native join (one subscription for all),
    # Celery's fastest way to await many results.
    def many(self, n):
        from celery.result import ResultSet

        results = ResultSet([celery_square.delay(i) for i in range(n)]).get(timeout=120)
        assert results[-1] == (n - 1) ** 2

    def cpu_many(self, n, rounds):
        from celery.result import ResultSet

        ResultSet([celery_cpu.delay(rounds) for _ in range(n)]).get(timeout=120)

    def close(self):
        pass


class DaskSystem:
    def __init__(self, procs):
        import distributed

        self.version = f"Dask distributed {distributed.__version__}"
        self.procs = procs
        self.file = os.path.join(procs.tmp, "scheduler.json")
        server = procs.start(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", self.file],
            "dask-scheduler",
        )
        self.server_pid = server.pid

        def file_up():
            try:
                with open(self.file) as f:
                    json.load(f)
                return True
            except (OSError, ValueError):
                return False

        wait_for("dask scheduler", file_up, procs)
        self.client = distributed.Client(scheduler_file=self.file)
        self.workers = []

    def add_worker(self):
        n = len(self.workers) + 1
        child = self.procs.start(
            ["dask", "worker", "--scheduler-file", self.file, "--host", "127.0.0.1",
             "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--no-dashboard",
             "--name", f"w{n}"],
            f"dask-w{n}",
        )
        self.workers.append(child.pid)
        wait_for(
            f"dask worker {n}",
            lambda: len(self.client.scheduler_info()["workers"]) >= len(self.workers),
            self.procs,
        )
        self.client.gather(
            [self.client.submit(square, i, pure=False) for i in range(4 * len(self.workers))]
        )

    def one(self, x):
        return self.client.submit(square, x, pure=False).result()

    def many(self, n):
        self.client.gather([self.client.submit(square, i, pure=False) for i in range(n)])

    def cpu_many(self, n, rounds):
        self.client.gather(
            [self.client.submit(cpu, rounds, pure=False) for _ in range(n)]
        )

    def close(self):
        self.client.close()


def main():
    system, latency, trivial, cpu_tasks, cpu_ms, hosts = sys.argv[1:7]
    latency, trivial, cpu_tasks, cpu_ms = int(latency), int(trivial), int(cpu_tasks), float(cpu_ms)
    hosts = [int(h) for h in hosts.split(",")]
    try:
        if system == "celery":
            if app is None:
                raise ImportError("No module named 'celery'")
            import redis  # noqa: F401  (the broker client Celery needs)

            if shutil.which("redis-server") is None:
                raise ImportError("redis-server is not installed (apt-get install redis-server)")
        elif system == "dask":
            import distributed  # noqa: F401

            if shutil.which("dask") is None:
                raise ImportError("the dask command is not on PATH")
        else:
            raise SystemExit(f"unknown system {system}")
        import psutil  # noqa: F401
    except ImportError as e:
        json.dump({"skipped": f"{system}: {e}"}, sys.stdout)
        return

    rounds, cpu_task = calibrate(cpu_ms)
    out = {"cpu": {}, "cpu_rounds": rounds, "cpu_task": cpu_task}
    tmp = tempfile.mkdtemp(prefix=f"wasmp-bench-{system}-")
    procs = Processes(tmp)
    sut = None
    try:
        sut = CelerySystem(procs) if system == "celery" else DaskSystem(procs)
        out["version"] = sut.version
        trivial_at = max([h for h in hosts if h <= TRIVIAL_HOSTS] or [hosts[0]])
        for count in hosts:
            while len(sut.workers) < count:
                sut.add_worker()
            if count == trivial_at:
                samples = []
                for i in range(latency):
                    start = time.perf_counter()
                    assert sut.one(i) == i * i
                    samples.append(time.perf_counter() - start)
                out["latency"] = samples
                out["trivial_hosts"] = count
                before = (tree_cpu([sut.server_pid]), tree_cpu(sut.workers), client_cpu())
                start = time.perf_counter()
                sut.many(trivial)
                out["trivial"] = time.perf_counter() - start
                after = (tree_cpu([sut.server_pid]), tree_cpu(sut.workers), client_cpu())
                out["server_cpu"] = after[0] - before[0]
                out["workers_cpu"] = after[1] - before[1]
                out["client_cpu"] = after[2] - before[2]
            start = time.perf_counter()
            sut.cpu_many(cpu_tasks, rounds)
            out["cpu"][str(count)] = time.perf_counter() - start
    finally:
        if sut is not None:
            sut.close()
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
