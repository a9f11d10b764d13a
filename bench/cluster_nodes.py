"""The cluster backend against the embedded default, in one run: the release binary as
one embedded server, and as deployments of 1, 2 and 3 nodes on one PostgreSQL (fsync
on) and moto's S3 server, each started fresh, interleaved round by round. Clients spread
their requests over every node of a deployment (followers forward to the writer).

Measured per configuration:
- PutMedia: one producer sending 1 s fragments one at a time, each after the previous
  one's PERSISTED ack: ack latency p50/p99 (from the start of the next fragment, which
  is when the server knows a fragment is whole, to its PERSISTED ack); and four
  producers at once, pipelined: fragments persisted per second.
- SQS: 4 client threads sending batches of 10 (messages/s), then receiving and deleting
  batches of 10 until the queue is empty (messages/s).
- Kinesis: 4 client threads putting batches of 500 records of 100 bytes (records/s).

Prints each configuration's median and spread over the rounds and its ratio to the
embedded server's median. This machine has 2 cores: nodes share them with PostgreSQL,
moto and the clients, so more nodes cannot add throughput here; the per-node cost is
what projects."""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from benchlib import free_port  # noqa: E402
from cluster import Postgres, S3  # noqa: E402

# KINESCOPE_BIN: another build (a quick check of this script with the debug one).
BIN = Path(os.environ.get("KINESCOPE_BIN", ROOT / "target" / "release" / "kinescope"))


def start_node(work, extra, env=None, port=None):
    port = port or free_port()
    log = open(work / f"node-{port}.log", "w")
    proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(work / f"data-{port}"), "--http", f"127.0.0.1:{port}",
                             "--rtsp", "127.0.0.1:0", *extra], stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def writing(work):
    return any("serving as the cluster's writer" in p.read_text() for p in work.glob("node-*.log"))


def deployment(kind, work, pg, s3, n):
    """Starts a configuration; returns (processes, node URLs)."""
    if kind == "embedded":
        proc, url = start_node(work, [])
        return [proc], [url]
    name = f"bench{int(time.time() * 1000) % 10**9}"
    db = pg.database(name)
    bucket = s3.bucket(name)
    env = dict(os.environ, AWS_ENDPOINT_URL=s3.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="us-east-1")
    args = ["--cluster", db, "--media", f"s3://{bucket}/media"]
    procs, urls = [], []
    for i in range(n):
        proc, url = start_node(work, args, env)
        procs.append(proc)
        urls.append(url)
        if i == 0:
            for _ in range(300):
                if writing(work):
                    break
                time.sleep(0.1)
    return procs, urls


def client(service, url):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench", config=Config(retries={"mode": "standard", "max_attempts": 5},
                                                                     max_pool_connections=8))


def mp4_parts(path):
    """(init bytes, [fragment bytes]) of a fragmented MP4."""
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes.append((data[pos + 4:pos + 8], data[pos:pos + size]))
        pos += size
    init = b"".join(b for k, b in boxes if k in (b"ftyp", b"moov"))
    frags, cur = [], b""
    for k, b in boxes:
        if k == b"moof" and cur:
            frags.append(cur)
            cur = b""
        if k in (b"moof", b"mdat"):
            cur += b
    if cur:
        frags.append(cur)
    return init, frags


class PutMedia:
    """A raw PutMedia session: chunked request body, acks read as they come."""

    def __init__(self, url, stream):
        host, port = url.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall((
            f"POST /putMedia HTTP/1.1\r\nHost: {host}:{port}\r\nx-amzn-stream-name: {stream}\r\n"
            "x-amzn-fragment-timecode-type: RELATIVE\r\n"
            f"x-amzn-producer-start-timestamp: {time.time():.3f}\r\nx-amzn-fragment-acknowledgment-required: 1\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode())
        self.buf, self.body, self.head_done, self.persisted = b"", b"", False, 0

    def send(self, data):
        self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def wait_persisted(self, count):
        while self.persisted < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("PutMedia closed: " + self.buf.decode(errors="replace")[:300])
            self.buf += chunk
            if not self.head_done:
                if b"\r\n\r\n" not in self.buf:
                    continue
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                if b" 200 " not in head.split(b"\r\n")[0]:
                    raise RuntimeError(head.decode(errors="replace"))
                self.head_done = True
            while b"\r\n" in self.buf:
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                self.body += rest[:size]
                self.buf = rest[size + 2:]
            while b"\n" in self.body:
                line, self.body = self.body.split(b"\n", 1)
                if line.strip():
                    ack = json.loads(line)
                    if ack.get("EventType") == "ERROR":
                        raise RuntimeError(f"PutMedia error: {ack}")
                    if ack.get("EventType") == "PERSISTED":
                        self.persisted += 1

    def close(self):
        self.sock.close()


def putmedia(urls, init, frags, kv):
    kv.create_stream(StreamName="lat", DataRetentionInHours=24)
    s = PutMedia(urls[-1], "lat")
    s.send(init + frags[0])
    lat = []
    # A fragment is whole when the next one starts (a GOP ends at the next keyframe):
    # its latency runs from then to its PERSISTED ack.
    for i, f in enumerate(frags[1:], start=1):
        s.send(f)
        t = time.perf_counter()
        s.wait_persisted(i)
        lat.append(time.perf_counter() - t)
    s.close()
    lat.sort()
    # Four producers at once, each pipelined, over the nodes in turn.
    for i in range(4):
        kv.create_stream(StreamName=f"tp{i}", DataRetentionInHours=24)
    done = []

    def producer(i):
        s = PutMedia(urls[i % len(urls)], f"tp{i}")
        s.send(init)
        for f in frags:
            s.send(f)
        s.send(b"")  # the body's end: the last fragment is whole
        s.wait_persisted(len(frags))
        s.close()
        done.append(len(frags))

    t = time.perf_counter()
    threads = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    fps = sum(done) / (time.perf_counter() - t)
    return {"ack_p50_ms": statistics.median(lat) * 1e3, "ack_p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1e3,
            "fragments_per_s": fps}


def in_threads(n, work):
    t = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    return time.perf_counter() - t


def sqs(urls, messages):
    q0 = client("sqs", urls[0])
    qurl = q0.create_queue(QueueName="bench")["QueueUrl"]
    per = messages // 4 // 10

    def send(i):
        c = client("sqs", urls[i % len(urls)])
        for b in range(per):
            c.send_message_batch(QueueUrl=qurl, Entries=[{"Id": str(k), "MessageBody": f"m{i}-{b}-{k}" * 4}
                                                         for k in range(10)])

    sent = in_threads(4, send)
    got = []

    def drain(i):
        c = client("sqs", urls[i % len(urls)])
        empty = 0
        while empty < 2:
            msgs = c.receive_message(QueueUrl=qurl, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not msgs:
                empty += 1
                continue
            c.delete_message_batch(QueueUrl=qurl, Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]}
                                                           for k, m in enumerate(msgs)])
            got.append(len(msgs))

    drained = in_threads(4, drain)
    assert sum(got) >= per * 40, (sum(got), per * 40)
    return {"sqs_send_per_s": per * 40 / sent, "sqs_receive_delete_per_s": sum(got) / drained}


def kinesis(urls, batches):
    k0 = client("kinesis", urls[0])
    k0.create_stream(StreamName="bench", ShardCount=2)
    while k0.describe_stream_summary(StreamName="bench")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        time.sleep(0.1)
    payload = b"x" * 100

    def put(i):
        c = client("kinesis", urls[i % len(urls)])
        for b in range(batches):
            out = c.put_records(StreamName="bench", Records=[{"Data": payload, "PartitionKey": f"{i}-{b}-{k}"}
                                                             for k in range(500)])
            assert out["FailedRecordCount"] == 0, out

    took = in_threads(4, put)
    return {"kinesis_records_per_s": 4 * batches * 500 / took}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--kinesis-batches", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=40, help="length of the PutMedia source (1 s fragments)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kinescope-cluster-bench-"))
    source = work / "source.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25", "-t",
                    str(args.seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
                    "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(source)], check=True)
    init, frags = mp4_parts(source)
    pg = Postgres(durable=True).start()
    s3 = S3()
    configs = [("embedded", 1), ("cluster", 1), ("cluster", 2), ("cluster", 3)]
    results = {}
    try:
        for r in range(args.rounds):
            for kind, n in configs:
                label = "embedded" if kind == "embedded" else f"{n} node{'s' if n > 1 else ''}"
                run_dir = work / f"{label.replace(' ', '-')}-{r}"
                run_dir.mkdir()
                procs, urls = deployment(kind, run_dir, pg, s3, n)
                try:
                    kv = client("kinesisvideo", urls[0])
                    m = putmedia(urls, init, frags, kv)
                    m.update(sqs(urls, args.messages))
                    m.update(kinesis(urls, args.kinesis_batches))
                finally:
                    for p in procs:
                        p.terminate()
                    for p in procs:
                        p.wait(20)
                print(f"round {r + 1}/{args.rounds} {label}: " + ", ".join(f"{k}={v:.1f}" for k, v in m.items()),
                      file=sys.stderr, flush=True)
                for k, v in m.items():
                    results.setdefault(label, {}).setdefault(k, []).append(v)
    finally:
        s3.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    metrics = list(results["embedded"].keys())
    print(f"\n{'metric':26} " + " ".join(f"{label:>30}" for label in results))
    for k in metrics:
        base = statistics.median(results["embedded"][k])
        cells = []
        for label in results:
            vals = results[label][k]
            med = statistics.median(vals)
            cells.append(f"{med:9.1f} ({min(vals):.0f}-{max(vals):.0f}) x{med / base:4.2f}")
        print(f"{k:26} " + " ".join(f"{c:>30}" for c in cells))
    print("\n(median (min-max) over the rounds, xRATIO to the embedded median; latencies: lower is better)")


if __name__ == "__main__":
    main()
