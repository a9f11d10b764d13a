"""Three nodes on one PostgreSQL and one S3-compatible bucket (`serve --cluster
--media`): any node answers every API and playback URL (the writer serves, the others
forward to it); kill -9 of the writer in the middle of PutMedia loses no acknowledged
fragment, message or record, and another node takes over; PostgreSQL restarted under
load fails requests cleanly and the nodes recover on their own."""

import datetime as dt
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import botocore.exceptions
import pytest

from cluster import ClusterNode
from conftest import FIXTURES, decode_errors, ffprobe, wait_for
from test_durability import producer


@pytest.fixture
def deployment(cluster_services, tmp_path, request):
    """A fresh database and bucket; a `start()` that adds a node."""
    pg, s3 = cluster_services
    name = "c" + request.node.name.lower().replace("test_", "")[:20].replace("-", "_")
    db = pg.database(name)
    bucket = s3.bucket(name.replace("_", "-"))
    nodes = []

    def start():
        d = tmp_path / f"node{len(nodes) + 1}"
        d.mkdir()
        n = ClusterNode(d, db, s3, bucket).start()
        nodes.append(n)
        return n

    start.database = name
    yield start, pg, s3, bucket
    for n in nodes:
        n.stop()


def retrying(call, timeout=30):
    """`call()` until it stops failing with a 5xx (a node taking over, the database
    coming back); other errors are raised."""
    deadline = time.time() + timeout
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError as e:
            if e.response["ResponseMetadata"]["HTTPStatusCode"] < 500 or time.time() > deadline:
                raise
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
            if time.time() > deadline:
                raise
        time.sleep(0.3)


def on(node, url):
    """`url` (made by the writer from its own address) as served by `node`."""
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(u._replace(netloc=urllib.parse.urlsplit(node.url).netloc))


def metric(node, name, labels=""):
    """The value of metric `name` (with `labels`, as written) at a node's /metrics."""
    text = urllib.request.urlopen(node.url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return None


def rtsp_accepts(node):
    host, port = urllib.parse.urlsplit(node.rtsp_url).netloc.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except ConnectionRefusedError:
        return False


def fragment_numbers(node, stream):
    am = node.client("kinesis-video-archived-media")
    out = []
    for page in am.get_paginator("list_fragments").paginate(StreamName=stream):
        out += [f["FragmentNumber"] for f in page["Fragments"]]
    return out


def test_three_nodes_serve_every_api_and_survive_the_writer_killed_mid_putmedia(deployment, tmp_path):
    start, _, s3, bucket = deployment
    n1 = start()
    wait_for(n1.writes, what="the first node takes the writer lease")
    n2, n3 = start(), start()
    assert not n2.writes() and not n3.writes()

    # Control plane through a follower; ingest through the writer.
    n2.client("kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
    _, acks, _ = n1.put("cam", FIXTURES / "av.mp4")
    first = [a["FragmentNumber"] for a in acks if a["EventType"] == "PERSISTED"]
    assert first and any(k.startswith("media/") for k in s3.objects(bucket)), "fragment bytes are in the bucket"
    # And through a follower: PutMedia streamed through the forwarder.
    _, acks, _ = n3.put("cam", FIXTURES / "av.mp4")
    first += [a["FragmentNumber"] for a in acks if a["EventType"] == "PERSISTED"]
    assert sorted(fragment_numbers(n2, "cam"), key=int) == sorted(first, key=int)

    # Playback through nodes 2 and 3.
    time.sleep(1)
    now = dt.datetime.now(dt.timezone.utc)
    rng = {"StartTimestamp": now - dt.timedelta(minutes=5), "EndTimestamp": now}
    hls = n2.client("kinesis-video-archived-media").get_hls_streaming_session_url(
        StreamName="cam", PlaybackMode="ON_DEMAND",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng})["HLSStreamingSessionURL"]
    copy = tmp_path / "hls.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", on(n3, hls), "-c", "copy", str(copy)], check=True, timeout=60)
    assert sorted(s["codec_name"] for s in ffprobe(copy)["streams"]) == ["aac", "h264"]
    clip = n3.client("kinesis-video-archived-media").get_clip(StreamName="cam", ClipFragmentSelector={
        "FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng})
    (tmp_path / "clip.mp4").write_bytes(clip["Payload"].read())
    rc, errors = decode_errors(tmp_path / "clip.mp4")
    assert rc == 0 and not errors.strip(), errors
    media = n2.client("kinesis-video-media", accept="video/mp4").get_media(
        StreamName="cam", StartSelector={"StartSelectorType": "EARLIEST"})
    assert media["Payload"].read(64 * 1024), "GetMedia streams through a follower"
    media["Payload"].close()
    am3 = n3.client("kinesis-video-archived-media")
    t0 = min(f["ProducerTimestamp"] for f in am3.list_fragments(StreamName="cam")["Fragments"])
    images = am3.get_images(StreamName="cam", ImageSelectorType="PRODUCER_TIMESTAMP", SamplingInterval=1000,
                            Format="JPEG", StartTimestamp=t0, EndTimestamp=t0 + dt.timedelta(seconds=3))["Images"]
    assert any(i.get("ImageContent") for i in images)

    # RTSP is the writer's: a follower's port refuses connections at once.
    assert rtsp_accepts(n1) and not rtsp_accepts(n2) and not rtsp_accepts(n3)

    # Each node says what it is; followers count what they passed on.
    assert (metric(n1, "kinescope_cluster_writer"), metric(n1, "kinescope_cluster_epoch")) == (1, 1)
    assert metric(n2, "kinescope_cluster_writer") == 0
    assert metric(n2, "kinescope_cluster_forwarded_total", '{outcome="answered"}') > 0

    # Queues and data streams, spread over the three nodes.
    sqs = [n.client("sqs") for n in (n1, n2, n3)]
    fifo = sqs[2].create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    sent = []
    for i in range(30):
        sqs[i % 3].send_message(QueueUrl=fifo, MessageBody=f"m{i}", MessageGroupId="g", MessageDeduplicationId=f"d{i}")
        sent.append(f"m{i}")
    kin = [n.client("kinesis") for n in (n1, n2, n3)]
    kin[1].create_stream(StreamName="events", ShardCount=1)
    wait_for(lambda: kin[2].describe_stream_summary(StreamName="events")["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
    seqs = [kin[i % 3].put_record(StreamName="events", Data=f"r{i}".encode(), PartitionKey="k")["SequenceNumber"]
            for i in range(30)]
    assert seqs == sorted(seqs, key=int)

    # kill -9 the writer in the middle of a PutMedia burst.
    procs, burst = producer(n1, "cam", realtime=False, seconds=600)
    wait_for(lambda: len(burst) >= 10, timeout=60, what="fragments acknowledged before the kill")
    n1.kill9()
    ff, put, t = procs
    put.wait(30)
    ff.kill()
    ff.wait()
    t.join(10)
    acked = first + list(burst)

    # Another node takes over once the lease expires; the producer retries there.
    writer = wait_for(lambda: next((n for n in (n2, n3) if n.writes()), None), timeout=30, what="a new writer")
    again = []

    def put_again():
        _, acks, _ = writer.put("cam", FIXTURES / "av.mp4", check=False)
        again.extend(a["FragmentNumber"] for a in acks if a["EventType"] == "PERSISTED")
        return again

    wait_for(put_again, timeout=30, what="PutMedia on the new writer")
    assert rtsp_accepts(writer), "the new writer serves RTSP on its port"
    listed = fragment_numbers(n3, "cam")
    missing = set(acked) - set(listed)
    assert not missing, f"acknowledged fragments lost when the writer died: {sorted(missing)}"
    assert min(int(n) for n in again) > max(int(n) for n in acked), "fragment numbers keep rising"
    resp = n2.client("kinesis-video-archived-media", accept="video/mp4").get_media_for_fragment_list(
        StreamName="cam", Fragments=sorted(burst, key=int)[-60:])
    (tmp_path / "after.mp4").write_bytes(resp["Payload"].read())
    rc, errors = decode_errors(tmp_path / "after.mp4")
    assert rc == 0 and not errors.strip(), errors

    # Every message is there once, in order; deduplication still holds.
    follower = next(n for n in (n2, n3) if n is not writer)
    q = follower.client("sqs")
    dup = retrying(lambda: q.send_message(QueueUrl=fifo, MessageBody="m0", MessageGroupId="g", MessageDeduplicationId="d0"))
    assert dup["MessageId"]
    got = []
    while True:
        out = retrying(lambda: q.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10, WaitTimeSeconds=1))
        msgs = out.get("Messages", [])
        if not msgs:
            break
        got += [m["Body"] for m in msgs]
        q.delete_message_batch(QueueUrl=fifo, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    assert got == sent

    # Every record is there; sequence numbers stay monotonic across the failover.
    k = follower.client("kinesis")
    shard = k.list_shards(StreamName="events")["Shards"][0]["ShardId"]
    it = k.get_shard_iterator(StreamName="events", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = k.get_records(ShardIterator=it, Limit=1000)["Records"]
    assert [r["SequenceNumber"] for r in records] == seqs
    later = retrying(lambda: k.put_record(StreamName="events", Data=b"after", PartitionKey="k"))["SequenceNumber"]
    assert int(later) > int(seqs[-1])

    # The killed node comes back as a follower of the new writer.
    n1b = start()
    assert not n1b.writes()
    assert n1b.client("sqs").get_queue_url(QueueName="q.fifo")["QueueUrl"]


def test_postgres_restarted_under_load_fails_requests_cleanly_then_recovers(deployment):
    start, pg, _, _ = deployment
    n1 = start()
    wait_for(n1.writes, what="the writer")
    n2 = start()
    q = n2.client("sqs")
    url = q.create_queue(QueueName="load")["QueueUrl"]
    acked, failures, stop = [], [], threading.Event()

    def send():
        i = 0
        while not stop.is_set():
            try:
                q.send_message(QueueUrl=url, MessageBody=f"m{i}")
                acked.append(f"m{i}")
            except botocore.exceptions.ClientError as e:
                failures.append((e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]))
            except botocore.exceptions.BotoCoreError as e:
                failures.append((0, type(e).__name__))
            i += 1

    t = threading.Thread(target=send)
    t.start()
    wait_for(lambda: len(acked) >= 20, what="messages before the restart")
    pg.restart(down_seconds=1)
    before = len(acked)
    wait_for(lambda: len(acked) >= before + 20, timeout=60, what="messages accepted again without a node restart")
    stop.set()
    t.join(30)
    assert failures, "requests made while PostgreSQL was down failed"
    # AWS's common 503 (SDKs retry it): the database out of reach, nothing changed.
    assert set(failures) == {(503, "ServiceUnavailable")}, set(failures)
    assert n1.writes() and n1.proc.poll() is None, "the writer kept its lease through a short outage"
    got = set()
    while True:
        msgs = q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            break
        got |= {m["Body"] for m in msgs}
        q.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    assert set(acked) <= got, f"acknowledged messages lost: {sorted(set(acked) - got)[:10]}"


def test_a_writer_whose_lease_was_taken_refuses_writes_and_exits(deployment):
    start, pg, _, _ = deployment
    n1 = start()
    wait_for(n1.writes, what="the writer")
    q = n1.client("sqs")
    url = q.create_queue(QueueName="fenced")["QueueUrl"]
    q.send_message(QueueUrl=url, MessageBody="before")
    # Another node (here: an operator's hand) takes the lease while n1 still runs.
    pg.psql(start.database, "UPDATE cluster_lease SET node = 'intruder', epoch = epoch + 1, "
                            "expires_at = now() + interval '60 seconds'")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        q.send_message(QueueUrl=url, MessageBody="after")
    assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert n1.proc.wait(15) == 1, "the writer stops once it learns it lost the lease"
    assert any("another node took the cluster lease" in line for line in n1.log)
    assert pg.psql(start.database, "SELECT count(*) FROM queue_messages") == "1", "the refused message left no row"


def test_a_stalled_bucket_delays_acks_and_loses_nothing(deployment, tmp_path):
    start, _, s3, _ = deployment
    n1 = start()
    wait_for(n1.writes, what="the writer")
    n1.client("kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
    procs, persisted = producer(n1, "cam", realtime=True, seconds=8)
    wait_for(lambda: len(persisted) >= 2, timeout=30, what="fragments before the stall")
    s3.proc.send_signal(signal.SIGSTOP)  # the S3 server stops answering, connections stay open
    try:
        time.sleep(3)
    finally:
        s3.proc.send_signal(signal.SIGCONT)
    ff, put, t = procs
    assert put.wait(90) == 0, "the producer finishes once the bucket answers again"
    ff.wait()
    t.join(10)
    assert len(persisted) >= 7, persisted
    listed = fragment_numbers(n1, "cam")
    assert set(persisted) <= set(listed)
    resp = n1.client("kinesis-video-archived-media", accept="video/mp4").get_media_for_fragment_list(
        StreamName="cam", Fragments=sorted(persisted, key=int))
    (tmp_path / "stalled.mp4").write_bytes(resp["Payload"].read())
    rc, errors = decode_errors(tmp_path / "stalled.mp4")
    assert rc == 0 and not errors.strip(), errors
