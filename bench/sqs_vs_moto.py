#!/usr/bin/env python3
"""SQS over HTTP: Kinescope against moto's server, driven by the same boto3 client code
in the same run. Prints messages/s for send→receive→delete cycles (single and batches
of 10, 1 and 32 client threads), the ratio Kinescope/moto for each, and the long-poll
wake-up latency (p50/p99) of both.

    .venv/bin/python bench/sqs_vs_moto.py          (bench/sqs_vs_moto.sh installs moto)

SECONDS=5 per cell by default. Both servers run on 127.0.0.1 ports chosen here.
"""

import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

SECONDS = float(os.environ.get("SECONDS_PER_CELL", "5"))


def client(url):
    return boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=64))


def wait_up(url):
    benchlib.wait_up(url, lambda: client(url).list_queues())


def cycles(url, queue_url, threads, batch):
    stop = time.monotonic() + SECONDS
    counts = [0] * threads

    def work(n):
        c = client(url)
        i = 0
        while time.monotonic() < stop:
            if batch == 1:
                c.send_message(QueueUrl=queue_url, MessageBody=f"t{n} m{i}")
            else:
                c.send_message_batch(QueueUrl=queue_url,
                                     Entries=[{"Id": str(j), "MessageBody": f"t{n} m{i}.{j}"} for j in range(batch)])
            i += 1
            got = c.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=batch).get("Messages", [])
            if batch == 1:
                for m in got:
                    c.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            elif got:
                c.delete_message_batch(QueueUrl=queue_url, Entries=[
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(got)])
            counts[n] += len(got)

    ts = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / SECONDS


def wake_latency(url, queue_url, samples=40):
    c_recv, c_send = client(url), client(url)
    lat = []
    for i in range(samples):
        box = {}

        def recv():
            r = c_recv.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)
            box["at"] = time.monotonic()
            for m in r.get("Messages", []):
                c_recv.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

        t = threading.Thread(target=recv)
        t.start()
        time.sleep(0.05)
        sent = time.monotonic()
        c_send.send_message(QueueUrl=queue_url, MessageBody=f"wake {i}")
        t.join(10)
        if "at" in box:
            lat.append(box["at"] - sent)
    lat.sort()
    return statistics.median(lat) * 1e3, lat[int(0.99 * (len(lat) - 1))] * 1e3


def main():
    work = Path(tempfile.mkdtemp(prefix="kinescope-sqs-bench-"))
    (kinescope, kurl), (moto, murl) = benchlib.start_kinescope(work), benchlib.start_moto()
    servers = [kinescope, moto]
    targets = {"kinescope": kurl, "moto": murl}
    try:
        for url in targets.values():
            wait_up(url)
        rows = []
        cells = [(1, 1), (1, 10), (32, 1), (32, 10)]
        for i, (threads, batch) in enumerate(cells):
            row = {}
            for name, url in targets.items():
                q = client(url).create_queue(QueueName=f"bench{i}")["QueueUrl"]
                print(f"[{i + 1}/{len(cells)}] {name}: {threads} client(s), batches of {batch}…", file=sys.stderr)
                row[name] = cycles(url, q, threads, batch)
            rows.append((threads, batch, row))
        wake = {}
        for name, url in targets.items():
            q = client(url).create_queue(QueueName="wake")["QueueUrl"]
            print(f"[wake] {name}: long polls woken by a send…", file=sys.stderr)
            wake[name] = wake_latency(url, q)
        print(f"\nSQS over HTTP, boto3 client threads, {SECONDS:.0f} s per cell, {os.cpu_count()} CPUs")
        print("| client threads | batch | kinescope msg/s | moto msg/s | ratio |")
        print("|---|---|---|---|---|")
        for threads, batch, row in rows:
            print(f"| {threads} | {batch} | {row['kinescope']:.0f} | {row['moto']:.0f} | {row['kinescope'] / row['moto']:.2f} |")
        k, m = wake["kinescope"], wake["moto"]
        print(f"| long-poll wake-up p50 / p99 | | {k[0]:.1f} / {k[1]:.1f} ms | {m[0]:.1f} / {m[1]:.1f} ms | |")
    finally:
        benchlib.stop_all(servers)


if __name__ == "__main__":
    main()
