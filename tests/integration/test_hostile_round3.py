"""Hostile input, third round: the surfaces added with WebRTC, Firehose, frames and
multiple accounts, attacked through the real binary as the round's findings did. Each
test failed before its fix: a record that killed the process for good, queries that
never end, peer connections leaked by refused offers, buckets any account could write,
WebSockets past the connection cap, signalling messages held for ever, outbound calls
anywhere, unbounded detections and images, one key that poisoned a stream, racing
session caps, partitions without a cap, ICE checks to any address, resource names on the
public metrics page, and a panic on a closed pipe."""

import base64
import concurrent.futures
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, BIN, FIXTURES, SECRET_KEY, Server, free_port, wait_for
from test_signaling import KEYS as SIGNALING_KEYS
from test_signaling import presigned_ws_url, ws_connect
from test_whip import offer as whip_offer
from test_whip import post as whip_post

KEYS = (ACCESS_KEY, SECRET_KEY)
ROLE = "arn:aws:iam::000000000000:role/firehose"


def objects(root):
    root = Path(root)
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def lines_under(root):
    return [json.loads(line) for p in objects(root).values() for line in p.read_text().splitlines() if line.strip()]


def partitioned(bucket, query, **extra):
    d = {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
         "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
         "Prefix": "cam=!{partitionKeyFromQuery:cam}/", "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
         "DynamicPartitioningConfiguration": {"Enabled": True},
         "ProcessingConfiguration": {"Enabled": True, "Processors": [
             {"Type": "MetadataExtraction", "Parameters": [
                 {"ParameterName": "MetadataExtractionQuery", "ParameterValue": query},
                 {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
             {"Type": "AppendDelimiterToRecord"}]}}
    d.update(extra)
    return d


def children(pid):
    """The pids of a process's children (query workers, for one)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metrics(server):
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as r:
        return r.read().decode()


# Findings 1, 2 and 10: a record, a query or a key never takes the server or its stream down.
def test_records_and_queries_that_crash_or_never_end_fail_alone_and_the_server_stays_up(data_dir):
    s = Server(data_dir, keys=KEYS).start()
    try:
        fh = s.client("firehose")
        # What cannot end, or crashes on any record, is refused when the stream is created.
        for query in ["def f: [f]; f", "last(range(1e18))", "(" * 6000]:
            with pytest.raises(ClientError) as e:
                fh.create_delivery_stream(DeliveryStreamName="refused",
                                          ExtendedS3DestinationConfiguration=partitioned("refused", query))
            assert e.value.response["Error"]["Code"] == "InvalidArgumentException", query
            assert "MetadataExtractionQuery" in e.value.response["Error"]["Message"]
        query = "if .slow then last(range(1e18)) elif .boom then (def f: [f]; f) else {cam: .cam} end"
        fh.create_delivery_stream(DeliveryStreamName="cams", ExtendedS3DestinationConfiguration=partitioned("cams", query))
        records = [b'{"cam":"door","n":1}', b"[" * 20000, b'{"slow":true}', b'{"boom":true}',
                   json.dumps({"cam": "k" * 300}).encode(), b'{"cam":"yard","n":2}', b'{"cam":"door","n":3}']
        fh.put_record_batch(DeliveryStreamName="cams", Records=[{"Data": r} for r in records])
        bucket = data_dir / "buckets" / "cams"
        failures = wait_for(lambda: len(lines_under(bucket / "errors")) >= 4 and lines_under(bucket / "errors"),
                            timeout=60, what="four failure records")
        assert s.proc.poll() is None, "the server is still running"
        door = "".join(p.read_text() for p in objects(bucket / "cam=door").values())
        assert door == '{"cam":"door","n":1}\n{"cam":"door","n":3}\n', door
        assert len(objects(bucket / "cam=door")) == 1, "the written partition was not written again"
        assert "".join(p.read_text() for p in objects(bucket / "cam=yard").values()) == '{"cam":"yard","n":2}\n'
        messages = sorted(f["errorMessage"] for f in failures)
        assert len(failures) == 4, messages
        assert any("nests deeper" in m for m in messages), messages
        assert any("time budget" in m for m in messages), messages
        assert any("crashed" in m for m in messages), messages
        assert any(f["errorCode"] == "DynamicPartitioning.InvalidPartitionKey" for f in failures), failures
        raw = {base64.b64decode(f["rawData"]) for f in failures}
        assert b"[" * 20000 in raw and b'{"slow":true}' in raw
        # No query worker outlives its batch.
        wait_for(lambda: not children(s.proc.pid), timeout=10, what="no query workers left")
        # A restart replays nothing that crashes: the backlog was delivered and the server starts.
        s.stop()
        s.start()
        with urllib.request.urlopen(s.url + "/health", timeout=10) as r:
            assert r.status == 200
        fh = s.client("firehose")
        fh.put_record(DeliveryStreamName="cams", Record={"Data": b"[" * 20000})
        wait_for(lambda: len(lines_under(bucket / "errors")) >= 5, timeout=60, what="the fifth failure record")
        assert s.proc.poll() is None
    finally:
        s.stop()


# Finding 3, 11 and 13: refused offers close their peers, caps hold under concurrency,
# candidates are capped and no mDNS socket is opened.
def test_refused_offers_free_their_sockets_and_session_caps_hold_under_a_burst(server):
    kv = server.client("kinesisvideo")
    pid = server.proc.pid
    kv.create_stream(StreamName="whip-bad", DataRetentionInHours=24)
    # Warm up: one refused offer, so lazily opened descriptors are counted in the baseline.
    no_ice = "\r\n".join(l for l in whip_offer().split("\r\n") if not l.startswith(("a=ice-", "a=fingerprint")))
    whip_post(server, "whip-bad", no_ice)
    time.sleep(1)
    baseline = fds(pid)
    for _ in range(40):
        status, _, body = whip_post(server, "whip-bad", no_ice)
        assert status == 400, body
    wait_for(lambda: fds(pid) <= baseline + 6, timeout=20, what=f"descriptors back near {baseline}")
    # 40 offers at once for 40 streams against the default cap of 16 WHIP sessions.
    for i in range(40):
        kv.create_stream(StreamName=f"burst-{i}", DataRetentionInHours=24)
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda i: whip_post(server, f"burst-{i}", whip_offer())[0], range(40)))
    assert statuses.count(201) <= 16 and statuses.count(201) >= 1, statuses
    assert set(statuses) <= {201, 503}, statuses
    # No mDNS socket (UDP 5353) among the server's.
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[1].endswith(":14E9"):
                assert cols[9] not in inodes, "the server opened an mDNS socket"


def test_an_offer_with_many_candidates_makes_checks_to_a_few_only(server):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="ice-many", DataRetentionInHours=24)
    listeners = []
    for _ in range(40):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        u.setblocking(False)
        listeners.append(u)
    # Half of them led by a bare CR, which SDP parsers skip before a line's type.
    candidates = [f"{chr(13) if i % 2 else ''}a=candidate:{i} 1 udp {2130706431 - i} 127.0.0.1 "
                  f"{u.getsockname()[1]} typ host" for i, u in enumerate(listeners)]
    sdp = whip_offer().rstrip("\r\n").split("\r\n") + candidates + ["a=end-of-candidates", ""]
    status, _, body = whip_post(server, "ice-many", "\r\n".join(sdp))
    assert status == 201, body

    deadline = time.time() + 6
    hit = set()
    while time.time() < deadline:
        for k, u in enumerate(listeners):
            try:
                u.recv(2048)
                hit.add(k)
            except BlockingIOError:
                pass
        time.sleep(0.05)
    seen = len(hit)
    for u in listeners:
        u.close()
    assert 1 <= seen <= 16, f"connectivity checks went to {seen} of 40 candidates"


# Finding 4: a bucket belongs to an account.
def test_another_accounts_bucket_is_refused_for_deliveries_and_images(tmp_path):
    teams = {"a": ("AKIDOWNERA", "secret-a", "111111111111"), "b": ("AKIDOTHERB", "secret-b", "222222222222")}
    config = tmp_path / "kinescope.toml"
    config.write_text("".join(f'[[access_keys]]\nid = "{k}"\nsecret = "{s}"\naccount_id = "{a}"\n\n'
                              for k, s, a in teams.values()))
    s = Server(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        def client(service, team):
            key, secret, _ = teams[team]
            return s.client(service, key=key, secret=secret)
        dest = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::evidence", "Prefix": "site1/",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}}
        client("firehose", "a").create_delivery_stream(DeliveryStreamName="a-log", ExtendedS3DestinationConfiguration=dest)
        with pytest.raises(ClientError) as e:
            client("firehose", "b").create_delivery_stream(DeliveryStreamName="b-log",
                                                           ExtendedS3DestinationConfiguration=dest)
        assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
        assert "another account" in e.value.response["Error"]["Message"]
        kv_b = client("kinesisvideo", "b")
        kv_b.create_stream(StreamName="cam-b", DataRetentionInHours=24)
        with pytest.raises(ClientError) as e:
            kv_b.update_image_generation_configuration(StreamName="cam-b", ImageGenerationConfiguration={
                "Status": "ENABLED", "ImageSelectorType": "PRODUCER_TIMESTAMP",
                "DestinationConfig": {"Uri": "s3://evidence/site1", "DestinationRegion": "us-east-1"},
                "SamplingInterval": 3000, "Format": "JPEG"})
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
        # B's own bucket works.
        kv_b.update_image_generation_configuration(StreamName="cam-b", ImageGenerationConfiguration={
            "Status": "ENABLED", "ImageSelectorType": "PRODUCER_TIMESTAMP",
            "DestinationConfig": {"Uri": "s3://b-frames/site1", "DestinationRegion": "us-east-1"},
            "SamplingInterval": 3000, "Format": "JPEG"})
        owners = json.loads((tmp_path / "data" / "buckets" / ".owners.json").read_text())
        assert owners == {"evidence": "111111111111", "b-frames": "222222222222"}
    finally:
        s.stop()


# Finding 5: upgraded connections count against the cap.
@pytest.fixture
def capped_https_server(data_dir):
    config = data_dir / "kinescope.toml"
    config.write_text("[limits]\nhttp_max_connections = 12\n")
    s = Server(data_dir, keys=SIGNALING_KEYS,
               extra_args=["--config", str(config), "--https", f"127.0.0.1:{free_port()}"]).start()
    yield s
    s.stop()


def test_websockets_count_against_the_connection_cap(capped_https_server):
    s = capped_https_server
    kv = s.client("kinesisvideo")
    arns = [kv.create_signaling_channel(ChannelName=f"cap-{i}")["ChannelARN"] for i in range(3)]
    held, refused = [], 0
    for i in range(24):
        try:
            held.append(ws_connect(s, presigned_ws_url(s, arns[i % 3], client_id=f"v{i}")))
        except Exception:
            refused += 1
    try:
        # Twelve places, one taken by nobody yet: the WebSockets fill them and keep them.
        assert 10 <= len(held) <= 12 and refused >= 12, (len(held), refused)
        assert 'kinescope_refused_total{listener="https",reason="connections"}' in metrics(s)
        # The plain listener has its own cap and still answers.
        with urllib.request.urlopen(s.url + "/health", timeout=10) as r:
            assert r.status == 200
    finally:
        for w in held:
            w.close()
    # Once they are closed, their places are free again.
    again = wait_for(lambda: _try_ws(s, arns[0]), timeout=15, what="a WebSocket after the others closed")
    again.close()


def _try_ws(s, arn):
    try:
        return ws_connect(s, presigned_ws_url(s, arn, client_id="later"))
    except Exception:
        return None


# Finding 6: messages held for an absent master are bounded and leave with the channel.
def test_messages_held_for_absent_masters_are_bounded_and_freed_with_the_channel(data_dir):
    s = Server(data_dir, keys=SIGNALING_KEYS, extra_args=["--https", f"127.0.0.1:{free_port()}"]).start()
    try:
        kv = s.client("kinesisvideo")
        arns = [kv.create_signaling_channel(ChannelName=f"held-{i}", SingleMasterConfiguration={
            "MessageTtlSeconds": 120})["ChannelARN"] for i in range(6)]
        payload = base64.b64encode(json.dumps({"type": "offer", "sdp": "v=0\r\n" + "a" * 6000}).encode()).decode()
        message = json.dumps({"action": "SDP_OFFER", "messagePayload": payload})
        for arn in arns:
            w = ws_connect(s, presigned_ws_url(s, arn, client_id="viewer"))
            for _ in range(60):
                w.send(message)
            w.close()

        def held():
            m = re.search(r"^kinescope_signaling_held_bytes (\d+)", metrics(s), re.M)
            return int(m.group(1)) if m else None
        held_now = wait_for(lambda: (h := held()) and h > 0 and h, timeout=10, what="held messages")
        assert held_now <= 6 * 256 * 1024, held_now
        for arn in arns:
            kv.delete_signaling_channel(ChannelARN=arn)
        assert held() == 0
    finally:
        s.stop()


# Finding 7: outbound calls go where the operator allows, follow no redirects, and a
# camera's status never reads back what the other side sent.
def test_outbound_calls_are_confined_and_redirects_not_followed(data_dir):
    config = data_dir / "kinescope.toml"
    config.write_text("[delivery_streams]\nallow_http_endpoints = true\n")
    s = Server(data_dir, keys=KEYS, extra_args=["--config", str(config)], egress_allow=()).start()
    try:
        fh = s.client("firehose")
        for url in ["http://127.0.0.1:9/", "http://169.254.169.254/latest/", "http://[::1]:9/"]:
            with pytest.raises(ClientError) as e:
                fh.create_delivery_stream(DeliveryStreamName="to-inside", HttpEndpointDestinationConfiguration={
                    "EndpointConfiguration": {"Url": url},
                    "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::backup"}})
            assert e.value.response["Error"]["Code"] == "InvalidArgumentException", url
            assert "not an allowed destination" in e.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as e:
            fh.create_delivery_stream(DeliveryStreamName="fn", ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::fn",
                "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": "http://127.0.0.1:9/fn"}]}]}})
        assert "not an allowed destination" in e.value.response["Error"]["Message"]
        # A camera source on loopback is refused too.
        s.client("kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        body = json.dumps({"url": "rtsp://127.0.0.1:8554/x", "transport": "tcp"}).encode()
        req = AWSRequest(method="PUT", url=s.url + "/v1/streams/cam/source", data=body,
                         headers={"content-type": "application/json"})
        SigV4Auth(Credentials(*KEYS), "kinesisvideo", "us-east-1").add_auth(req)
        r = urllib.request.Request(req.url, data=body, method="PUT", headers=dict(req.headers))
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(r, timeout=10)
        assert e.value.code == 400 and b"not an allowed destination" in e.value.read()
    finally:
        s.stop()


class Counting(http.server.ThreadingHTTPServer):
    def __init__(self, status, location=None):
        self.hits = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.hits += 1
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        super().__init__(("127.0.0.1", 0), H)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/"


def test_a_redirect_does_not_carry_a_delivery_elsewhere(data_dir):
    inside = Counting(200)
    bouncer = Counting(307, location=inside.url)
    config = data_dir / "kinescope.toml"
    config.write_text("[delivery_streams]\nallow_http_endpoints = true\n")
    s = Server(data_dir, keys=KEYS, extra_args=["--config", str(config)]).start()
    try:
        fh = s.client("firehose")
        fh.create_delivery_stream(DeliveryStreamName="bounce", HttpEndpointDestinationConfiguration={
            "EndpointConfiguration": {"Url": bouncer.url},
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bounce-backup"}})
        fh.put_record(DeliveryStreamName="bounce", Record={"Data": b"secret"})
        wait_for(lambda: bouncer.hits >= 2, timeout=30, what="two attempts at the bouncing endpoint")
        assert inside.hits == 0, "the redirect was not followed"
    finally:
        s.stop()
        inside.shutdown()
        bouncer.shutdown()


def test_a_camera_pointed_at_another_service_does_not_echo_its_bytes(server):
    banner = b"SSH-2.0-SECRET-BANNER-0123456789 private build\r\n"
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            try:
                c.recv(4096)
                c.sendall(banner * 4)
            except OSError:
                pass
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        server.client("kinesisvideo").create_stream(StreamName="echo", DataRetentionInHours=24)
        body = json.dumps({"url": f"rtsp://127.0.0.1:{srv.getsockname()[1]}/x", "transport": "tcp"}).encode()
        req = urllib.request.Request(f"{server.url}/v1/streams/echo/source", method="PUT", data=body)
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status in (200, 201)

        def last_error():
            with urllib.request.urlopen(f"{server.url}/v1/streams/echo/source", timeout=10) as r:
                return json.loads(r.read()).get("status", {}).get("last_error")
        err = wait_for(last_error, timeout=30, what="the source's error")
        assert "SECRET" not in err and "SSH" not in err, err
    finally:
        stop.set()
        srv.close()


# Finding 8: /detections reads and parses within bounds.
def test_detections_over_huge_records_stay_within_memory(server):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="det-cam", DataRetentionInHours=24)
    kinesis = server.client("kinesis")
    kinesis.create_stream(StreamName="det-meta", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="det-meta", WaiterConfig={"Delay": 1})
    arn = kinesis.describe_stream_summary(StreamName="det-meta")["StreamDescriptionSummary"]["StreamARN"]
    now_ms = int(time.time() * 1000)
    big = json.dumps({"streamName": "det-cam", "frameTimestampMs": now_ms,
                      "boxes": [[0.1, 0.2] for _ in range((1_000_000 - 100) // 12)]}).encode()
    assert len(big) <= 1024 * 1024
    for _ in range(30):
        kinesis.put_record(StreamName="det-meta", Data=big, PartitionKey="k")
    small = json.dumps({"streamName": "det-cam", "frameTimestampMs": now_ms + 1, "label": "person"}).encode()
    kinesis.put_record(StreamName="det-meta", Data=small, PartitionKey="k")
    req = urllib.request.Request(f"{server.url}/v1/streams/det-cam/metadata", method="PUT",
                                 data=json.dumps({"DataStreamARN": arn}).encode(),
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    before = rss_kib(server.proc.pid)
    url = f"{server.url}/v1/streams/det-cam/detections?start={now_ms - 1000}&end={now_ms + 1000}"

    def get(_):
        with urllib.request.urlopen(url, timeout=60) as r:
            return json.loads(r.read())["Detections"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(get, range(4)))
    grown_mib = (rss_kib(server.proc.pid) - before) / 1024
    assert all([d.get("label") for d in r] == ["person"] for r in results), results[0][:2]
    assert grown_mib < 400, f"RSS grew {grown_mib:.0f} MiB"
    with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
        assert r.status == 200


# Finding 9: no image larger than 3840x2160, however tall the picture.
def test_get_images_of_a_tall_picture_stays_within_the_size_limits(server, tmp_path):
    clip = tmp_path / "tall.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x1120:r=10", "-t", "2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
                    "-f", "mp4", str(clip)], check=True, timeout=60)
    server.client("kinesisvideo").create_stream(StreamName="tall", DataRetentionInHours=24)
    server.put("tall", clip)
    am = server.client("kinesis-video-archived-media")
    frags = sorted(am.list_fragments(StreamName="tall")["Fragments"], key=lambda f: f["ProducerTimestamp"])
    start = frags[0]["ProducerTimestamp"]
    before = rss_kib(server.proc.pid)
    images = am.get_images(StreamName="tall", ImageSelectorType="PRODUCER_TIMESTAMP", StartTimestamp=start,
                           EndTimestamp=start, Format="PNG", WidthPixels=3840)["Images"]
    png = base64.b64decode(images[0]["ImageContent"])
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width <= 3840 and height <= 2160, (width, height)
    assert abs(width / height - 64 / 1120) < 0.01, (width, height)
    assert (rss_kib(server.proc.pid) - before) / 1024 < 300


# Finding 12: at most 500 partitions a batch.
def test_partitions_past_the_limit_go_to_the_error_prefix(data_dir):
    s = Server(data_dir, keys=KEYS).start()
    try:
        fh = s.client("firehose")
        fh.create_delivery_stream(DeliveryStreamName="many", ExtendedS3DestinationConfiguration=partitioned(
            "many", "{cam: .cam}", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 3}))
        for batch in range(2):
            fh.put_record_batch(DeliveryStreamName="many", Records=[
                {"Data": json.dumps({"cam": f"c{batch}-{i}"}).encode()} for i in range(300)])
        bucket = data_dir / "buckets" / "many"
        over = wait_for(lambda: lines_under(bucket / "errors" / "activePartitionExceeded"), timeout=60,
                        what="records past the partition limit")
        partitions = [p for p in bucket.iterdir() if p.name.startswith("cam=")]
        assert len(partitions) == 500 and len(over) == 100, (len(partitions), len(over))
    finally:
        s.stop()


# Finding 14: the unauthenticated metrics page names no account's resources.
def test_metrics_name_no_delivery_stream(data_dir):
    s = Server(data_dir, keys=KEYS).start()
    try:
        fh = s.client("firehose")
        fh.create_delivery_stream(DeliveryStreamName="secret-project-falcon", ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::falcon",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}})
        fh.put_record(DeliveryStreamName="secret-project-falcon", Record={"Data": b"x"})
        page = wait_for(lambda: (m := metrics(s)) and 'kinescope_delivery_records_total{outcome="delivered"}' in m and m,
                        timeout=20, what="the delivery counted")
        assert "falcon" not in page
    finally:
        s.stop()


# Also: `kinescope put … | head` ends quietly.
def test_put_into_a_closed_pipe_ends_quietly(server):
    server.client("kinesisvideo").create_stream(StreamName="piped", DataRetentionInHours=24)
    env = dict(os.environ)
    p = subprocess.Popen([BIN, "put", "--endpoint", server.url, "--stream", "piped", str(FIXTURES / "video_only.mp4")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.readline()
    p.stdout.close()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-2000:]
    assert b"panicked" not in err, err.decode()[-2000:]


# Also hardened: a made-up region is no new set of quotas.
def test_a_region_nobody_serves_is_refused(signed_server):
    for service, call in [("sqs", lambda c: c.list_queues()), ("kinesis", lambda c: c.list_streams()),
                          ("kinesisvideo", lambda c: c.list_streams())]:
        c = signed_server.client(service, region_name="zz-fake-9")
        with pytest.raises(ClientError) as e:
            call(c)
        assert "valid region" in e.value.response["Error"]["Message"], (service, e.value.response)
    assert signed_server.client("sqs", region_name="ap-southeast-2").list_queues() is not None


# Also hardened: a presigned URL opens the signalling WebSocket and nothing else.
def test_presigned_urls_are_taken_for_the_signalling_websocket_only(signed_server):
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="POST", url=signed_server.url + "/listStreams", data=b"")
    SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "kinesisvideo", "us-east-1", expires=300).add_auth(req)
    r = urllib.request.Request(req.url, data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r, timeout=10)
    assert e.value.code == 403
    assert b"signalling WebSocket" in e.value.read()


# Also hardened: publishing tokens can be revoked without deleting the stream.
def test_publishing_tokens_are_revoked_on_request(signed_server):
    from test_whip import bearer, signed_post
    s = signed_server
    s.client("kinesisvideo").create_stream(StreamName="obs-revoke", DataRetentionInHours=24)
    old = signed_post(s, "/v1/streams/obs-revoke/whip-token", b'{"ExpiresInSeconds": 3600}')[1]["Token"]
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="DELETE", url=s.url + "/v1/streams/obs-revoke/whip-token", data=b"")
    SigV4Auth(Credentials(*s.keys), "kinesisvideo", "us-east-1").add_auth(req)
    with urllib.request.urlopen(urllib.request.Request(req.url, method="DELETE", headers=dict(req.headers)), timeout=10) as r:
        assert r.status == 200
    status, _, body = bearer(s, "/v1/streams/obs-revoke/whip", old, whip_offer())
    assert status == 403 and b"revoked" in body, body
    time.sleep(0.01)
    new = signed_post(s, "/v1/streams/obs-revoke/whip-token", b'{"ExpiresInSeconds": 3600}')[1]["Token"]
    status, _, body = bearer(s, "/v1/streams/obs-revoke/whip", new, whip_offer())
    assert status == 201, body


# Also hardened: a master's signalling URL is valid for minutes, not days.
def test_a_long_lived_signalling_url_is_refused(data_dir):
    from websockets.exceptions import InvalidStatus
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from urllib.parse import urlencode
    s = Server(data_dir, keys=SIGNALING_KEYS, extra_args=["--https", f"127.0.0.1:{free_port()}"]).start()
    try:
        arn = s.client("kinesisvideo").create_signaling_channel(ChannelName="week")["ChannelARN"]
        req = AWSRequest(method="GET", url=f"{s.https_url}/v1/signaling?{urlencode({'X-Amz-ChannelARN': arn})}")
        SigV4QueryAuth(Credentials(*SIGNALING_KEYS), "kinesisvideo", "us-east-1", expires=7 * 24 * 3600).add_auth(req)
        with pytest.raises(InvalidStatus) as e:
            ws_connect(s, req.url.replace("https://", "wss://"))
        assert e.value.response.status_code == 403 and b"at most 900 seconds" in e.value.response.body
        ws_connect(s, presigned_ws_url(s, arn)).close()
    finally:
        s.stop()
