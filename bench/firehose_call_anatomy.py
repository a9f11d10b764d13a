#!/usr/bin/env python3
"""Where one PutRecordBatch call (500 x 1 KiB) spends its time, for the boto3-vs-moto
goal: boto3 end to end against Kinescope and moto; the same request body sent raw
(http.client, no boto3) to Kinescope; Kinescope's CPU per raw call (/proc/PID/stat, all
threads); and the floor of durability on this disk: write 512 KiB + fdatasync. Three
interleaved rounds, median and spread.

    ANATOMY=1 bench/firehose_vs_moto.sh     (installs moto, builds the release binary)
"""
import base64
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from firehose_vs_moto import RECORD, client, create  # noqa: E402

CALLS = int(os.environ.get("CALLS", "150"))
ROUNDS = 3


def cpu_ticks(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def per_call_boto3(url, name):
    c = client(url)
    records = [{"Data": RECORD}] * 500
    c.put_record_batch(DeliveryStreamName=name, Records=records)
    t = time.perf_counter()
    for _ in range(CALLS):
        c.put_record_batch(DeliveryStreamName=name, Records=records)
    return (time.perf_counter() - t) / CALLS * 1e3


def per_call_raw(url, name, pid):
    body = json.dumps({"DeliveryStreamName": name,
                       "Records": [{"Data": base64.b64encode(RECORD).decode()}] * 500}).encode()
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host)
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Firehose_20150804.PutRecordBatch"}
    conn.request("POST", "/", body, headers)
    conn.getresponse().read()
    ticks = cpu_ticks(pid)
    t = time.perf_counter()
    for _ in range(CALLS):
        conn.request("POST", "/", body, headers)
        r = conn.getresponse()
        out = r.read()
        assert r.status == 200 and b'"FailedPutCount":0' in out, out[:300]
    wall = (time.perf_counter() - t) / CALLS * 1e3
    cpu = (cpu_ticks(pid) - ticks) * 10 / CALLS  # ms, CLK_TCK 100
    return wall, cpu


def per_call_fsync(directory):
    data = RECORD * 500
    path = Path(directory) / "fsync-probe"
    with open(path, "ab") as f:
        t = time.perf_counter()
        for _ in range(CALLS):
            f.write(data)
            f.flush()
            os.fdatasync(f.fileno())
        return (time.perf_counter() - t) / CALLS * 1e3


def main():
    work = Path(tempfile.mkdtemp(prefix="kinescope-firehose-anatomy-", dir=Path(__file__).resolve().parents[1] / "target"))
    (kin, kurl), (moto, murl) = benchlib.start_kinescope(work), benchlib.start_moto()
    try:
        for url in (kurl, murl):
            benchlib.wait_up(url, lambda u=url: client(u).list_delivery_streams())
        create(kurl, "anatomy", make_bucket=False)
        create(murl, "anatomy", make_bucket=True)
        cells = {k: [] for k in ("boto3 → kinescope", "boto3 → moto", "raw → kinescope", "kinescope CPU", "512 KiB write + fdatasync")}
        for r in range(ROUNDS):
            print(f"[round {r + 1}/{ROUNDS}]", file=sys.stderr)
            cells["boto3 → kinescope"].append(per_call_boto3(kurl, "anatomy"))
            cells["boto3 → moto"].append(per_call_boto3(murl, "anatomy"))
            wall, cpu = per_call_raw(kurl, "anatomy", kin.pid)
            cells["raw → kinescope"].append(wall)
            cells["kinescope CPU"].append(cpu)
            cells["512 KiB write + fdatasync"].append(per_call_fsync(work))
        print(f"\nPutRecordBatch (500 x 1 KiB), ms per call, {CALLS} calls per cell, {ROUNDS} rounds, {os.cpu_count()} CPUs")
        print("| what | ms per call, median (spread) |")
        print("|---|---|")
        for k, v in cells.items():
            print(f"| {k} | {statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f}) |")
        b = statistics.median(cells["boto3 → kinescope"]) - statistics.median(cells["raw → kinescope"])
        print(f"\nboto3's own share of a Kinescope call ≈ {b:.2f} ms; "
              f"ratio moto/kinescope through boto3 = "
              f"{statistics.median(cells['boto3 → moto']) / statistics.median(cells['boto3 → kinescope']):.2f}")
    finally:
        benchlib.stop_all([kin, moto])


if __name__ == "__main__":
    main()
