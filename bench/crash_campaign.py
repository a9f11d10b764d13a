#!/usr/bin/env python3
"""Crash campaign: ROUNDS rounds of kill -9 at a random moment under mixed load, each
followed by a restart and a check that everything acknowledged before the kill is
there, whole.

Load per round (all at once, on one server): PutMedia from three cameras (ffmpeg test
patterns piped into `kinescope put`, acknowledgements read back), an RTSP publisher,
SQS standard and FIFO sends (FIFO with deduplication ids, some resent), and Kinesis
puts. After the restart it checks:

- every PERSISTED fragment is listed, its bytes pass their CRC (GetMediaForFragmentList
  reads them) and they decode with ffmpeg;
- every acknowledged SQS message is received (standard: at least once; FIFO: exactly
  once per deduplication id), and resending an acknowledged deduplication id after the
  restart returns the same MessageId (deduplication survived the crash);
- every acknowledged Kinesis record is read back with its data and sequence number.

    bench/crash_campaign.py [ROUNDS]    (default 5; needs a built target/debug/kinescope
                                         or KINESCOPE_BIN, ffmpeg, and the test venv)

Prints progress per round and a summary: rounds, acknowledged items per kind, losses
(which must be 0; the exit status is 1 otherwise).
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("KINESCOPE_BIN", str(ROOT / "target" / "debug" / "kinescope"))
CFG = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10)


class Server:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.proc = None
        self.url = self.rtsp = None

    def start(self):
        env = dict(os.environ, KINESCOPE_LOG="warn")
        for k in ("KINESCOPE_ACCESS_KEY_ID", "KINESCOPE_SECRET_ACCESS_KEY"):
            env.pop(k, None)
        self.proc = subprocess.Popen([BIN, "serve", "--data-dir", str(self.data_dir), "--http", "127.0.0.1:0",
                                      "--rtsp", "127.0.0.1:0"], env=dict(env, KINESCOPE_LOG="info,sled=warn"),
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        deadline = time.time() + 60
        for line in self.proc.stderr:
            m = re.search(r"kinescope ready http=(\S+) rtsp=(\S+)", line)
            if m:
                self.url, self.rtsp = f"http://{m.group(1)}", f"rtsp://{m.group(2)}"
                break
            if time.time() > deadline:
                raise RuntimeError("server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def client(self, service, accept=None):
        client = boto3.client(service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="y", config=CFG)
        if accept:  # GetMediaForFragmentList answers fragmented MP4 to Accept: video/mp4
            client.meta.events.register("before-sign", lambda request, **_: request.headers.__setitem__("Accept", accept))
        return client


class Acked:
    """What the load was told was stored, per kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fragments = {}      # stream -> [fragment numbers]
        self.standard = []       # bodies
        self.fifo = {}           # dedup id -> (message id, body)
        self.records = []        # (sequence number, data)

    def add(self, kind, *item):
        with self.lock:
            if kind == "fragment":
                self.fragments.setdefault(item[0], []).append(item[1])
            elif kind == "standard":
                self.standard.append(item[0])
            elif kind == "fifo":
                self.fifo[item[0]] = (item[1], item[2])
            elif kind == "record":
                self.records.append(item)


def camera(server, stream, acked, stop):
    ffmpeg = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                               "testsrc2=size=320x240:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                               "-t", "60", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    put = subprocess.Popen([BIN, "put", "--endpoint", server.url, "--stream", stream, "-"], stdin=ffmpeg.stdout,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in put.stdout:
        try:
            ack = json.loads(line)
        except ValueError:
            continue
        if ack.get("EventType") == "PERSISTED":
            acked.add("fragment", stream, ack["FragmentNumber"])
        if stop.is_set():
            break
    for p in (put, ffmpeg):
        p.kill()
        p.wait()


def rtsp_publisher(server, stream, stop):
    p = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                          str(ROOT / "fixtures" / "av.mp4"), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
                          f"{server.rtsp}/{stream}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop.wait()
    p.kill()
    p.wait()


def sqs_sender(server, url, fifo, acked, stop, tag):
    sqs = server.client("sqs")
    i = 0
    while not stop.is_set():
        body = f"{tag}-{i}"
        try:
            if fifo:
                dedup = f"{tag}-{i}"
                r = sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=f"g{i % 3}",
                                     MessageDeduplicationId=dedup)
                acked.add("fifo", dedup, r["MessageId"], body)
            else:
                sqs.send_message(QueueUrl=url, MessageBody=body)
                acked.add("standard", body)
        except Exception:
            return
        i += 1


def kinesis_putter(server, stream, acked, stop, tag):
    k = server.client("kinesis")
    i = 0
    while not stop.is_set():
        data = f"{tag}-{i}".encode()
        try:
            r = k.put_record(StreamName=stream, PartitionKey=f"k{i % 7}", Data=data)
            acked.add("record", r["SequenceNumber"], data)
        except Exception:
            return
        i += 1


def verify(server, rnd, acked, queues, tmp):
    losses = []
    archived = server.client("kinesis-video-archived-media", accept="video/mp4")
    for stream, numbers in acked.fragments.items():
        listed = set()
        token = None
        while True:
            kw = {"StreamName": stream, "MaxResults": 1000}
            if token:
                kw["NextToken"] = token
            else:
                kw["FragmentSelector"] = {"FragmentSelectorType": "SERVER_TIMESTAMP",
                                          "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": time.time() + 60}}
            r = archived.list_fragments(**kw)
            listed.update(f["FragmentNumber"] for f in r["Fragments"])
            token = r.get("NextToken")
            if not token:
                break
        missing = [n for n in numbers if n not in listed]
        losses += [f"fragment {stream}/{n}" for n in missing]
        present = [n for n in numbers if n in listed]
        for chunk in (present[i:i + 100] for i in range(0, len(present), 100)):
            body = archived.get_media_for_fragment_list(StreamName=stream, Fragments=chunk)["Payload"].read()
            out = tmp / f"r{rnd}-{stream}.mp4"
            out.write_bytes(body)
            p = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
            if p.returncode != 0 or p.stderr.strip():
                losses.append(f"fragments of {stream} do not decode: {p.stderr.strip()[:200]}")
    sqs = server.client("sqs")
    for url, fifo in queues:
        seen = []
        while True:
            r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600, WaitTimeSeconds=0)
            msgs = r.get("Messages", [])
            if not msgs:
                break
            seen += [m["Body"] for m in msgs]
            # Deleted once seen: a FIFO group returns its next messages only then.
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        if fifo:
            for dedup, (mid, body) in acked.fifo.items():
                if body not in seen:
                    losses.append(f"fifo message {body}")
            dup = len(seen) - len(set(seen))
            if dup:
                losses.append(f"{dup} fifo duplicates")
            for dedup, (mid, body) in list(acked.fifo.items())[:20]:
                again = sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g0", MessageDeduplicationId=dedup)
                if again["MessageId"] != mid:
                    losses.append(f"fifo dedup id {dedup} forgotten")
        else:
            losses += [f"standard message {b}" for b in set(acked.standard) - set(seen)]
    k = server.client("kinesis")
    got = {}
    for shard in k.list_shards(StreamName=f"records-{rnd}")["Shards"]:
        it = k.get_shard_iterator(StreamName=f"records-{rnd}", ShardId=shard["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                got[rec["SequenceNumber"]] = rec["Data"]
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    losses += [f"record {seq}" for seq, data in acked.records if got.get(seq) != data]
    return losses


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    random.seed(int(os.environ.get("SEED", time.time())))
    tmp = Path(tempfile.mkdtemp(prefix="kinescope-crash-"))
    server = Server(tmp / "data")
    totals = {"fragments": 0, "standard": 0, "fifo": 0, "records": 0}
    all_losses = []
    for rnd in range(1, rounds + 1):
        server.start()
        kv, sqs, k = server.client("kinesisvideo"), server.client("sqs"), server.client("kinesis")
        cams = [f"cam{rnd}-{i}" for i in range(3)]
        for c in cams + [f"rtsp{rnd}"]:
            kv.create_stream(StreamName=c)
        std = sqs.create_queue(QueueName=f"std-{rnd}")["QueueUrl"]
        fifo = sqs.create_queue(QueueName=f"fifo-{rnd}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        k.create_stream(StreamName=f"records-{rnd}", ShardCount=2)
        k.get_waiter("stream_exists").wait(StreamName=f"records-{rnd}", WaiterConfig={"Delay": 0.2})
        acked, stop = Acked(), threading.Event()
        threads = [threading.Thread(target=camera, args=(server, c, acked, stop)) for c in cams]
        threads.append(threading.Thread(target=rtsp_publisher, args=(server, f"rtsp{rnd}", stop)))
        threads += [threading.Thread(target=sqs_sender, args=(server, std, False, acked, stop, f"s{rnd}.{i}"))
                    for i in range(2)]
        threads.append(threading.Thread(target=sqs_sender, args=(server, fifo, True, acked, stop, f"f{rnd}")))
        threads += [threading.Thread(target=kinesis_putter, args=(server, f"records-{rnd}", acked, stop, f"k{rnd}.{i}"))
                    for i in range(2)]
        for t in threads:
            t.start()
        load_s = random.uniform(2.5, 6.0)
        time.sleep(load_s)
        server.kill9()
        stop.set()
        for t in threads:
            t.join(30)
        server.start()
        losses = verify(server, rnd, acked, [(std, False), (fifo, True)], tmp)
        counts = {"fragments": sum(len(v) for v in acked.fragments.values()), "standard": len(acked.standard),
                  "fifo": len(acked.fifo), "records": len(acked.records)}
        for key, n in counts.items():
            totals[key] += n
        all_losses += losses
        print(f"round {rnd}/{rounds}: killed after {load_s:.1f} s; acknowledged {counts}; losses {len(losses)}"
              + (f": {losses[:5]}" if losses else ""), flush=True)
        server.kill9()
    print(f"\n{rounds} rounds of kill -9 under mixed load: acknowledged {totals['fragments']} fragments, "
          f"{totals['standard']} standard and {totals['fifo']} FIFO messages, {totals['records']} Kinesis records; "
          f"losses: {len(all_losses)}")
    sys.exit(1 if all_losses else 0)


if __name__ == "__main__":
    main()
