#!/usr/bin/env python3
"""Firehose over HTTP: Kinescope against moto's server, driven by the same boto3 client
code in the same run. PutRecordBatch of 500 × 1 KiB records from 1 and 8 client threads
into a stream delivering to a bucket; records/s for each side, interleaved cell by cell,
3 rounds, median and spread of the ratio Kinescope/moto.

A third side gives the ceiling: nginx answering every call at once with a canned
PutRecordBatch answer (500 record ids), a server that takes no time. What boto3 reaches
against it is the most any server can reach through this client on this machine, so
ceiling/moto bounds the ratio any server could show here.

    bench/firehose_vs_moto.sh          (installs moto, builds the release binary)

SECONDS_PER_CELL=3 by default. Both servers run on 127.0.0.1 ports chosen here.
"""

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

SECONDS = float(os.environ.get("SECONDS_PER_CELL", "3"))
ROUNDS = 3
RECORD = b"x" * 1023 + b"\n"


def client(url, service="firehose"):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=64))


def create(url, name, make_bucket):
    """A stream into bucket `bench` (moto wants the bucket to exist; Kinescope's buckets
    are directories made on first write)."""
    if make_bucket:
        client(url, "s3").create_bucket(Bucket="bench")
    client(url).create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/bench",
                                            "BucketARN": "arn:aws:s3:::bench",
                                            "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}})


def put_rate(url, name, threads):
    stop = time.monotonic() + SECONDS
    counts = [0] * threads
    records = [{"Data": RECORD}] * 500

    def work(n):
        c = client(url)
        while time.monotonic() < stop:
            r = c.put_record_batch(DeliveryStreamName=name, Records=records)
            counts[n] += 500 - r["FailedPutCount"]

    ts = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / SECONDS


def main():
    work = Path(tempfile.mkdtemp(prefix="kinescope-firehose-bench-"))
    (kinescope, kurl), (moto, murl) = benchlib.start_kinescope(work), benchlib.start_moto()
    answer = json.dumps({"FailedPutCount": 0, "Encrypted": False,
                         "RequestResponses": [{"RecordId": uuid.uuid4().hex} for _ in range(500)]}).encode()
    instant, iurl = benchlib.start_instant(work, answer, "application/x-amz-json-1.1")
    servers = [kinescope, moto, instant]
    targets = {"kinescope": kurl, "moto": murl, "ceiling": iurl}
    try:
        for name, url in targets.items():
            if name != "ceiling":
                benchlib.wait_up(url, lambda u=url: client(u).list_delivery_streams())
        benchlib.wait_up(iurl, lambda: client(iurl).put_record_batch(DeliveryStreamName="x", Records=[{"Data": b"x"}]))
        ratios = {1: [], 8: []}
        rates = {(n, t): [] for n in targets for t in ratios}
        for r in range(ROUNDS):
            for threads in ratios:
                row = {}
                for name, url in targets.items():
                    stream = f"bench-{r}-{threads}"
                    if name != "ceiling":
                        create(url, stream, make_bucket=name == "moto")
                    print(f"[round {r + 1}/{ROUNDS}] {name}: {threads} thread(s)…", file=sys.stderr)
                    row[name] = put_rate(url, stream, threads)
                    rates[(name, threads)].append(row[name])
                ratios[threads].append(row["kinescope"] / row["moto"])
        print(f"\nFirehose PutRecordBatch (500 × 1 KiB) over HTTP, boto3, {SECONDS:.0f} s per cell, "
              f"{ROUNDS} rounds interleaved, {os.cpu_count()} CPUs")
        print("| client threads | kinescope rec/s (median) | moto rec/s (median) | ratio median (spread) "
              "| ceiling rec/s (instant server) | ceiling / moto |")
        print("|---|---|---|---|---|---|")
        for threads, rs in ratios.items():
            k = statistics.median(rates[("kinescope", threads)])
            m = statistics.median(rates[("moto", threads)])
            c = statistics.median(rates[("ceiling", threads)])
            print(f"| {threads} | {k:.0f} | {m:.0f} | {statistics.median(rs):.2f} ({min(rs):.2f}–{max(rs):.2f}) "
                  f"| {c:.0f} | {c / m:.2f} |")
    finally:
        benchlib.stop_all(servers)


if __name__ == "__main__":
    main()
