"""Starts the real `kinescope` binary on a loopback port chosen at run time and hands
tests the boto3 clients that talk to it."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
BIN = os.environ.get("KINESCOPE_BIN", str(ROOT / "target" / "debug" / "kinescope"))
ACCESS_KEY = "AKIDKINESCOPETEST"
SECRET_KEY = "kinescope-test-secret-key"


class Server:
    """One server process with its own data directory."""

    def __init__(self, data_dir, keys=None, extra_args=(), egress_allow=("127.0.0.0/8",), extra_env=None):
        self.data_dir = data_dir
        self.keys = keys
        self.extra_env = dict(extra_env or {})
        # The test helpers (functions, endpoints, cameras) listen on loopback: the
        # operator's allowance. Hostile tests pass () to see the default policy.
        self.extra_args = [a for c in egress_allow for a in ("--egress-allow", c)] + list(extra_args)
        self.proc = None
        self.url = None
        self.log = []

    def start(self, port=0):
        env = dict(os.environ)
        env.pop("KINESCOPE_ACCESS_KEY_ID", None)
        env.pop("KINESCOPE_SECRET_ACCESS_KEY", None)
        env["KINESCOPE_LOG"] = os.environ.get("KINESCOPE_TEST_LOG", "info,sled=warn")
        if self.keys:
            env["KINESCOPE_ACCESS_KEY_ID"], env["KINESCOPE_SECRET_ACCESS_KEY"] = self.keys
        env.update(self.extra_env)
        args = [BIN, "serve", "--data-dir", str(self.data_dir), "--http", f"127.0.0.1:{port}", "--rtsp", "127.0.0.1:0"]
        self.proc = subprocess.Popen(args + self.extra_args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"kinescope ready http=(\S+) rtsp=(\S+)", line)
                if m:
                    self.url = f"http://{m.group(1)}"
                    self.rtsp_url = f"rtsp://{m.group(2)}"
                    h = re.search(r" https=(https://\S+)", line)
                    self.https_url = h.group(1) if h else None
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
            assert r.status == 200
        return self

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self):
        self.stop(signal.SIGKILL)

    def client(self, service, key=None, secret=None, region_name="us-east-1", accept=None, **config):
        """A boto3 client of this server. `accept`: an Accept header on every request
        (GetMedia and GetMediaForFragmentList answer fragmented MP4 to `video/mp4`)."""
        cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, **config)
        client = boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region_name,
            aws_access_key_id=key or (self.keys[0] if self.keys else "anonymous"),
            aws_secret_access_key=secret or (self.keys[1] if self.keys else "anonymous"),
            config=cfg,
        )
        if accept:
            def add_accept(request, **_):
                request.headers["Accept"] = accept
            client.meta.events.register("before-sign", add_accept)
        return client

    def put(self, stream, source, *extra, env_keys=None, check=True, stdin=None):
        """Runs `kinescope put`; returns (returncode, [ack dicts], stderr)."""
        env = dict(os.environ)
        for k in ("KINESCOPE_ACCESS_KEY_ID", "KINESCOPE_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(k, None)
        keys = env_keys if env_keys is not None else self.keys
        if keys:
            env["KINESCOPE_ACCESS_KEY_ID"], env["KINESCOPE_SECRET_ACCESS_KEY"] = keys
        p = subprocess.run(
            [BIN, "put", "--endpoint", self.url, "--stream", stream, *extra, str(source)],
            env=env, capture_output=True, text=True, timeout=120, stdin=stdin,
        )
        acks = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        if check:
            assert p.returncode == 0, p.stderr
        return p.returncode, acks, p.stderr


def free_port():
    """A 127.0.0.1 port free right now (for helpers such as the fake camera)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="kinescope-test-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


# `KINESCOPE_TEST_BACKEND=cluster`: the `server` and `signed_server` fixtures are a
# two-node cluster on a throwaway PostgreSQL and S3 server instead of one embedded
# server. Tests talk to the follower node, whose requests the writer node answers
# (the writer builds its URLs with the follower's address), so every request crosses
# the forwarder; RTSP goes to the writer (followers do not forward it). Tests of what
# only a single process has (its data directory, its restarts) are marked
# `embedded_only` and skipped there.
CLUSTER = os.environ.get("KINESCOPE_TEST_BACKEND") == "cluster"


def pytest_configure(config):
    config.addinivalue_line("markers", "embedded_only(reason): needs one embedded server (skipped on the cluster backend)")


def pytest_collection_modifyitems(config, items):
    if CLUSTER:
        for item in items:
            m = item.get_closest_marker("embedded_only")
            if m:
                item.add_marker(pytest.mark.skip(reason="embedded only: " + (m.args[0] if m.args else "")))


@pytest.fixture(scope="session")
def cluster_services():
    from cluster import Postgres, S3
    pg = Postgres().start()
    s3 = S3()
    yield pg, s3
    s3.stop()
    pg.stop()


def _cluster(request, data_dir, keys):
    from cluster import ClusterNode
    pg, s3 = request.getfixturevalue("cluster_services")
    name = "t" + str(abs(hash(request.node.nodeid)))[:12]
    db = pg.database(name)
    bucket = s3.bucket("b" + name[1:])
    follower_port = free_port()
    (data_dir / "writer").mkdir()
    writer = ClusterNode(data_dir / "writer", db, s3, bucket, keys=keys,
                         extra=["--public-url", f"http://127.0.0.1:{follower_port}"]).start()
    wait_for(writer.writes, what="the writer node takes the lease")
    follower = ClusterNode(data_dir, db, s3, bucket, keys=keys).start(port=follower_port)
    follower.writer = writer
    # RTSP is served by the writer alone (followers forward HTTP only).
    follower.rtsp_url = writer.rtsp_url
    return writer, follower


@pytest.fixture
def server(request, data_dir):
    if CLUSTER:
        writer, s = _cluster(request, data_dir, None)
        yield s
        s.stop()
        writer.stop()
        return
    s = Server(data_dir).start()
    yield s
    s.stop()


@pytest.fixture
def signed_server(request, data_dir):
    if CLUSTER:
        writer, s = _cluster(request, data_dir, (ACCESS_KEY, SECRET_KEY))
        yield s
        s.stop()
        writer.stop()
        return
    s = Server(data_dir, keys=(ACCESS_KEY, SECRET_KEY)).start()
    yield s
    s.stop()


def ffprobe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,channels:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


def recent_clip(server, stream, name, minutes=2):
    """GetClip of a stream's last minutes into the data dir; its streams by codec name,
    after checking that ffmpeg decodes every frame without complaint."""
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc)
    clip = server.client("kinesis-video-archived-media").get_clip(StreamName=stream, ClipFragmentSelector={
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": now - dt.timedelta(minutes=minutes), "EndTimestamp": now}})
    path = server.data_dir / name
    path.write_bytes(clip["Payload"].read())
    rc, errors = decode_errors(path)
    assert rc == 0 and not errors.strip(), errors
    return {s["codec_name"]: s for s in ffprobe(path)["streams"]}


def decode_errors(path):
    """Decodes every frame with ffmpeg; returns what it complained about."""
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    return p.returncode, p.stderr


def mp4_top_boxes(data):
    """(type, offset, size) of the top-level boxes of an MP4 byte string."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8 or pos + size > len(data):
            break
        out.append((kind, pos, size))
        pos += size
    return out


def fragment_metadata(data):
    """The JSON of every Kinescope metadata uuid box in a GetMedia payload."""
    metas = []
    for kind, pos, size in mp4_top_boxes(data):
        if kind == "uuid" and data[pos + 8:pos + 24] == b"kinescope-meta01":
            metas.append(json.loads(data[pos + 24:pos + size]))
    return metas


def closed_within(sock, seconds):
    """Whether the server closed `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def wait_for(predicate, timeout=20, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not met within {timeout} s")


def run_js(script, url, extra_env=None):
    """Runs web/tests/SCRIPT (an AWS SDK for JavaScript v3 program) against `url` with
    the test keys; returns the JSON object it printed last."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, **(extra_env or {}))
    p = subprocess.run(["node", str(root / "web" / "tests" / script), url, "us-east-1", ACCESS_KEY, SECRET_KEY],
                       capture_output=True, text=True, timeout=120, cwd=root / "web", env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def java_sdk_jars():
    """The AWS SDK for Java 2.x jars that the `kclpy-ext` wheel bundles (Maven is not
    reachable here; PyPI is)."""
    import amazon_kclpy
    return Path(amazon_kclpy.__file__).parent / "jars"
