"""Kinesis over HTTP: Kinescope against kinesalite, the same boto3 client in the same run.

For 1 and 8 shards: PutRecords of 500 records (1 KiB each) from 4 client threads for
SECONDS_PER_CELL seconds, then GetRecords draining every shard from TRIM_HORIZON; and the
put-to-get delay of a consumer polling GetRecords at the tip (what a KCL worker sees).
Both servers run on 127.0.0.1 ports chosen here; kinesalite keeps its data in memory.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("SECONDS_PER_CELL", "5"))
RECORD = b"r" * 1024
THREADS = 4


def client(url):
    return boto3.client("kinesis", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", verify=False,
                        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=64))


def wait_up(url):
    benchlib.wait_up(url, lambda: client(url).list_streams())


def wait_active(c, name):
    while c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        time.sleep(0.1)


def put_rate(url, name):
    stop = time.monotonic() + SECONDS
    counts = [0] * THREADS

    def work(n):
        c = client(url)
        i = 0
        while time.monotonic() < stop:
            recs = [{"Data": RECORD, "PartitionKey": f"{n}-{i}-{j}"} for j in range(500)]
            r = c.put_records(StreamName=name, Records=recs)
            counts[n] += 500 - r.get("FailedRecordCount", 0)
            i += 1

    start = time.monotonic()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def drain_rate(url, name):
    c = client(url)
    start = time.monotonic()
    n = 0
    for sh in c.list_shards(StreamName=name)["Shards"]:
        it = c.get_shard_iterator(StreamName=name, ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = c.get_records(ShardIterator=it, Limit=10000)
            if not r["Records"]:
                break
            n += len(r["Records"])
            it = r.get("NextShardIterator")
    return n / (time.monotonic() - start), n


def tip_delay(url):
    c = client(url)
    c.create_stream(StreamName="tip", ShardCount=1)
    wait_active(c, "tip")
    it = c.get_shard_iterator(StreamName="tip", ShardId="shardId-000000000000", ShardIteratorType="LATEST")["ShardIterator"]
    producer = client(url)
    delays = []
    for i in range(100):
        t0 = time.monotonic()
        producer.put_record(StreamName="tip", Data=b"x", PartitionKey="k")
        while True:
            r = c.get_records(ShardIterator=it)
            it = r["NextShardIterator"]
            if r["Records"]:
                break
        delays.append(time.monotonic() - t0)
    delays.sort()
    return statistics.median(delays) * 1e3, delays[98] * 1e3


def main():
    work = Path(tempfile.mkdtemp(prefix="kinescope-kinesis-bench-"))
    lport = free_port()
    kinescope, kurl = benchlib.start_kinescope(work)
    kinesalite = ROOT / "target" / "kinesalite" / "node_modules" / ".bin" / "kinesalite"
    servers = [
        kinescope,
        subprocess.Popen([str(kinesalite), "--port", str(lport), "--createStreamMs", "0", "--deleteStreamMs", "0",
                          "--updateStreamMs", "0", "--shardLimit", "100"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    targets = {"kinescope": kurl, "kinesalite": f"http://127.0.0.1:{lport}"}
    try:
        for url in targets.values():
            wait_up(url)
        rows = []
        for shards in (1, 8):
            row = {}
            for name, url in targets.items():
                c = client(url)
                stream = f"bench{shards}"
                c.create_stream(StreamName=stream, ShardCount=shards)
                wait_active(c, stream)
                print(f"[{shards} shard(s)] {name}: PutRecords for {SECONDS:.0f} s, then drain…", file=sys.stderr)
                put = put_rate(url, stream)
                drain, n = drain_rate(url, stream)
                row[name] = (put, drain, n)
            rows.append((shards, row))
        tips = {}
        for name, url in targets.items():
            print(f"[tip] {name}: put → GetRecords at the tip…", file=sys.stderr)
            tips[name] = tip_delay(url)
        mb = lambda r: r * len(RECORD) / 1e6
        print(f"\nKinesis over HTTP, boto3, {THREADS} client threads, {SECONDS:.0f} s per cell, {os.cpu_count()} CPUs")
        print("| figure | kinescope | kinesalite | ratio |")
        print("|---|---|---|---|")
        for shards, row in rows:
            (kp, kd, kn), (lp, ld, ln) = row["kinescope"], row["kinesalite"]
            print(f"| PutRecords ×500, {shards} shard(s) | {kp:.0f} rec/s ({mb(kp):.1f} MB/s) | {lp:.0f} rec/s ({mb(lp):.1f} MB/s) | {kp / lp:.2f} |")
            print(f"| GetRecords drain, {shards} shard(s) | {kd:.0f} rec/s ({kn} records) | {ld:.0f} rec/s ({ln} records) | {kd / ld:.2f} |")
        k, l = tips["kinescope"], tips["kinesalite"]
        print(f"| put → GetRecords at the tip p50 / p99 | {k[0]:.1f} / {k[1]:.1f} ms | {l[0]:.1f} / {l[1]:.1f} ms | |")
    finally:
        benchlib.stop_all(servers)


if __name__ == "__main__":
    main()
