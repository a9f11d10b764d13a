"""Delivery streams (Firehose) with boto3 and the aws CLI against the real binary:
records into a directory bucket and an HTTP endpoint, buffering, retries, the error
prefix, AWS's errors for bad input, and kill -9 (every acknowledged record delivered)."""

import base64
import gzip
import http.server
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, Server, wait_for

KEYS = (ACCESS_KEY, SECRET_KEY)
ROLE = "arn:aws:iam::123456789012:role/firehose"


@pytest.fixture
def fh_server(data_dir):
    config = data_dir / "kinescope.toml"
    config.write_text("[delivery_streams]\nallow_http_endpoints = true\n")
    s = Server(data_dir, keys=KEYS, extra_args=["--config", str(config)]).start()
    yield s
    s.stop()


def objects(root):
    """Every object under a bucket directory, by key, oldest name first."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def s3_destination(bucket, **extra):
    d = {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
         "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}}
    d.update(extra)
    return d


def test_direct_put_into_a_bucket_with_boto3(fh_server):
    fh = fh_server.client("firehose")
    arn = fh.create_delivery_stream(
        DeliveryStreamName="detections",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration=s3_destination(
            "frames", Prefix="cams/", CompressionFormat="GZIP",
            ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}),
        Tags=[{"Key": "team", "Value": "vision"}],
    )["DeliveryStreamARN"]
    assert arn == "arn:aws:firehose:us-east-1:000000000000:deliverystream/detections"
    desc = fh.describe_delivery_stream(DeliveryStreamName="detections")["DeliveryStreamDescription"]
    assert desc["DeliveryStreamStatus"] == "ACTIVE" and desc["VersionId"] == "1"
    assert desc["DeliveryStreamType"] == "DirectPut"
    dest = desc["Destinations"][0]
    assert dest["DestinationId"] == "destinationId-000000000001"
    assert dest["ExtendedS3DestinationDescription"]["CompressionFormat"] == "GZIP"
    assert dest["ExtendedS3DestinationDescription"]["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 0}

    one = fh.put_record(DeliveryStreamName="detections", Record={"Data": b'{"frame":1}'})
    assert one["RecordId"] and one["Encrypted"] is False
    batch = fh.put_record_batch(DeliveryStreamName="detections",
                                Records=[{"Data": json.dumps({"frame": i}).encode()} for i in range(2, 5)])
    assert batch["FailedPutCount"] == 0 and len(batch["RequestResponses"]) == 3
    assert len({r["RecordId"] for r in batch["RequestResponses"]} | {one["RecordId"]}) == 4

    bucket = fh_server.data_dir / "buckets" / "frames"

    def delivered():
        text = "".join(gzip.decompress(p.read_bytes()).decode() for p in objects(bucket).values())
        return text if text.count("\n") == 4 else None
    text = wait_for(delivered, what="4 records in the bucket")
    # In order within an object; objects written in the same second sort by their UUID.
    assert sorted(json.loads(l)["frame"] for l in text.splitlines()) == [1, 2, 3, 4]
    key = next(iter(objects(bucket)))
    parts = key.split("/")
    assert parts[0] == "cams" and len(parts) == 6 and parts[5].startswith("detections-1-") and key.endswith(".gz"), key

    # Update: the version must match; a new prefix applies to later objects.
    with pytest.raises(ClientError) as e:
        fh.update_destination(DeliveryStreamName="detections", CurrentDeliveryStreamVersionId="7",
                              DestinationId="destinationId-000000000001",
                              ExtendedS3DestinationUpdate={"Prefix": "x/"})
    assert e.value.response["Error"]["Code"] == "ConcurrentModificationException"
    fh.update_destination(DeliveryStreamName="detections", CurrentDeliveryStreamVersionId="1",
                          DestinationId="destinationId-000000000001",
                          ExtendedS3DestinationUpdate={"Prefix": "v2/", "CompressionFormat": "UNCOMPRESSED"})
    desc = fh.describe_delivery_stream(DeliveryStreamName="detections")["DeliveryStreamDescription"]
    assert desc["VersionId"] == "2"
    assert desc["Destinations"][0]["ExtendedS3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::frames"
    fh.put_record(DeliveryStreamName="detections", Record={"Data": b'{"frame":5}'})
    v2 = wait_for(lambda: [k for k in objects(bucket) if k.startswith("v2/")], what="an object under the new prefix")
    assert (bucket / v2[0]).read_bytes() == b'{"frame":5}\n'
    assert "detections-2-" in v2[0]

    # Tags, listing, encryption (recorded and reported), delete.
    fh.tag_delivery_stream(DeliveryStreamName="detections", Tags=[{"Key": "site", "Value": "door"}])
    tags = fh.list_tags_for_delivery_stream(DeliveryStreamName="detections")
    assert tags["Tags"] == [{"Key": "site", "Value": "door"}, {"Key": "team", "Value": "vision"}]
    assert tags["HasMoreTags"] is False
    page = fh.list_tags_for_delivery_stream(DeliveryStreamName="detections", Limit=1)
    assert page["HasMoreTags"] is True and len(page["Tags"]) == 1
    fh.untag_delivery_stream(DeliveryStreamName="detections", TagKeys=["site"])
    fh.start_delivery_stream_encryption(DeliveryStreamName="detections",
                                        DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})
    desc = fh.describe_delivery_stream(DeliveryStreamName="detections")["DeliveryStreamDescription"]
    assert desc["DeliveryStreamEncryptionConfiguration"]["Status"] == "ENABLED"
    assert fh.put_record(DeliveryStreamName="detections", Record={"Data": b"{}"})["Encrypted"] is True
    fh.stop_delivery_stream_encryption(DeliveryStreamName="detections")
    fh.create_delivery_stream(DeliveryStreamName="another", ExtendedS3DestinationConfiguration=s3_destination("frames"))
    listed = fh.list_delivery_streams()
    assert listed["DeliveryStreamNames"] == ["another", "detections"] and listed["HasMoreDeliveryStreams"] is False
    assert fh.list_delivery_streams(Limit=1)["HasMoreDeliveryStreams"] is True
    assert fh.list_delivery_streams(ExclusiveStartDeliveryStreamName="another")["DeliveryStreamNames"] == ["detections"]
    fh.delete_delivery_stream(DeliveryStreamName="detections")
    with pytest.raises(ClientError) as e:
        fh.describe_delivery_stream(DeliveryStreamName="detections")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_bad_input_gets_firehoses_errors(fh_server):
    fh = fh_server.client("firehose", parameter_validation=False)
    fh.create_delivery_stream(DeliveryStreamName="strict", ExtendedS3DestinationConfiguration=s3_destination("b"))

    def code(call, **kw):
        with pytest.raises(ClientError) as e:
            call(**kw)
        return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"], \
            e.value.response["Error"]["Message"]

    assert code(fh.create_delivery_stream, DeliveryStreamName="strict",
                ExtendedS3DestinationConfiguration=s3_destination("b"))[:2] == ("ResourceInUseException", 400)
    c, status, msg = code(fh.create_delivery_stream, DeliveryStreamName="rs",
                          RedshiftDestinationConfiguration={"RoleARN": ROLE})
    assert (c, status) == ("InvalidArgumentException", 400) and "not supported by Kinescope" in msg
    assert code(fh.create_delivery_stream, DeliveryStreamName="bad name",
                ExtendedS3DestinationConfiguration=s3_destination("b"))[0] == "InvalidArgumentException"
    c, _, msg = code(fh.create_delivery_stream, DeliveryStreamName="big",
                     ExtendedS3DestinationConfiguration=s3_destination("b", BufferingHints={"SizeInMBs": 500, "IntervalInSeconds": 60}))
    assert c == "InvalidArgumentException" and "between 1 and 128" in msg
    c, _, msg = code(fh.create_delivery_stream, DeliveryStreamName="esc",
                     ExtendedS3DestinationConfiguration=s3_destination("b", Prefix="!{timestamp:yyyy}/"))
    assert c == "InvalidArgumentException" and "ErrorOutputPrefix" in msg
    assert code(fh.put_record, DeliveryStreamName="nope", Record={"Data": b"x"})[:2] == ("ResourceNotFoundException", 400)
    assert code(fh.put_record_batch, DeliveryStreamName="strict",
                Records=[{"Data": b"x"}] * 501)[0] == "InvalidArgumentException"
    assert code(fh.put_record, DeliveryStreamName="strict",
                Record={"Data": b"x" * 1_024_001})[0] == "InvalidArgumentException"
    assert code(fh.put_record_batch, DeliveryStreamName="strict",
                Records=[{"Data": b"x" * 1_000_000}] * 5)[0] == "InvalidArgumentException"
    assert code(fh.update_destination, DeliveryStreamName="strict", CurrentDeliveryStreamVersionId="1",
                DestinationId="destinationId-000000000009",
                ExtendedS3DestinationUpdate={"Prefix": "a/"})[0] == "InvalidArgumentException"
    assert code(fh.tag_delivery_stream, DeliveryStreamName="strict",
                Tags=[{"Key": "aws:x", "Value": "y"}])[0] == "ValidationException"
    # Nothing accepted before was harmed.
    fh.put_record(DeliveryStreamName="strict", Record={"Data": b"still here"})
    wait_for(lambda: objects(fh_server.data_dir / "buckets" / "b"), what="the good record delivered")


def test_aws_cli_drives_a_delivery_stream(fh_server, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEYS[0], AWS_SECRET_ACCESS_KEY=KEYS[1], AWS_DEFAULT_REGION="us-east-1")
    aws = [str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"), "--endpoint-url", fh_server.url, "firehose"]
    dest = json.dumps(s3_destination("cli"))
    out = subprocess.run(aws + ["create-delivery-stream", "--delivery-stream-name", "cli",
                                "--extended-s3-destination-configuration", dest],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["DeliveryStreamARN"].endswith(":deliverystream/cli")
    subprocess.run(aws + ["put-record", "--delivery-stream-name", "cli",
                          "--record", '{"Data":"hello from the cli"}'], env=env, capture_output=True, text=True, check=True)
    names = json.loads(subprocess.run(aws + ["list-delivery-streams"], env=env, capture_output=True, text=True,
                                      check=True).stdout)["DeliveryStreamNames"]
    assert names == ["cli"]
    found = wait_for(lambda: objects(fh_server.data_dir / "buckets" / "cli"), what="the CLI's record")
    assert next(iter(found.values())).read_bytes() == b"hello from the cli"


def test_a_bucket_down_then_back_loses_nothing(fh_server):
    fh = fh_server.client("firehose")
    buckets = fh_server.data_dir / "buckets"
    buckets.mkdir(parents=True, exist_ok=True)
    (buckets / "flaky").write_text("a file where the bucket's directory should be")
    fh.create_delivery_stream(DeliveryStreamName="flaky", ExtendedS3DestinationConfiguration=s3_destination(
        "flaky", ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}))
    for i in range(20):
        fh.put_record_batch(DeliveryStreamName="flaky", Records=[{"Data": f"r{i}-{j}".encode()} for j in range(10)])
    time.sleep(1.5)
    assert fh.describe_delivery_stream(DeliveryStreamName="flaky")  # still serving while the bucket fails
    metrics = fh_server_metrics(fh_server)
    assert 'kinescope_delivery_records_total{outcome="failed_attempt"}' in metrics
    (buckets / "flaky").unlink()
    lines = wait_for(lambda: (t := "".join(p.read_text() for p in objects(buckets / "flaky").values())).count("\n") >= 200 and t,
                     what="200 records after the bucket came back")
    assert sorted(lines.splitlines()) == sorted(f"r{i}-{j}" for i in range(20) for j in range(10))
    metrics = fh_server_metrics(fh_server)
    assert 'kinescope_delivery_records_total{outcome="delivered"} 200' in metrics
    assert 'kinescope_delivery_records_total{outcome="incoming"} 200' in metrics


def fh_server_metrics(server):
    import urllib.request
    return urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()


class JsonServer:
    """A loopback HTTP server taking JSON POSTs: `respond(headers, request)` returns
    (status, JSON-able answer or None)."""

    def __init__(self, respond, path):
        outer = self
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                headers, req = {k.lower(): v for k, v in self.headers.items()}, json.loads(body)
                outer.requests.append((headers, req))
                status, answer = respond(headers, req)
                out = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


class Endpoint(JsonServer):
    """An HTTP endpoint speaking Firehose's delivery protocol, failing its first
    `fail_first` requests with 500."""

    def __init__(self, fail_first=0, always_fail=False):
        def respond(_headers, req):
            if always_fail or len(self.requests) <= fail_first:
                return 500, None
            return 200, {"requestId": req["requestId"], "timestamp": int(time.time() * 1000)}
        super().__init__(respond, "ingest")


def http_destination(url, **extra):
    d = {"EndpointConfiguration": {"Url": url, "Name": "detector", "AccessKey": "s3cr3t"},
         "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
         "RequestConfiguration": {"ContentEncoding": "GZIP",
                                  "CommonAttributes": [{"AttributeName": "site", "AttributeValue": "door"}]},
         "S3Configuration": s3_destination("backup", ErrorOutputPrefix="failed/!{firehose:error-output-type}/")}
    d.update(extra)
    return d


def test_http_endpoint_gets_firehoses_requests_and_retries(fh_server):
    endpoint = Endpoint(fail_first=2)
    try:
        fh = fh_server.client("firehose")
        fh.create_delivery_stream(DeliveryStreamName="hook", HttpEndpointDestinationConfiguration=http_destination(endpoint.url))
        desc = fh.describe_delivery_stream(DeliveryStreamName="hook")["DeliveryStreamDescription"]
        http_desc = desc["Destinations"][0]["HttpEndpointDestinationDescription"]
        assert http_desc["EndpointConfiguration"] == {"Url": endpoint.url, "Name": "detector"}, "no access key"
        fh.put_record_batch(DeliveryStreamName="hook", Records=[{"Data": f"event {i}".encode()} for i in range(5)])
        wait_for(lambda: len(endpoint.requests) >= 3, what="a delivery after two failures")
        headers, req = endpoint.requests[-1]
        assert [base64.b64decode(r["data"]) for r in req["records"]] == [f"event {i}".encode() for i in range(5)]
        assert headers["x-amz-firehose-access-key"] == "s3cr3t"
        assert headers["x-amz-firehose-protocol-version"] == "1.0"
        assert headers["x-amz-firehose-request-id"] == req["requestId"]
        assert headers["x-amz-firehose-source-arn"].endswith(":deliverystream/hook")
        assert json.loads(headers["x-amz-firehose-common-attributes"]) == {"commonAttributes": {"site": "door"}}
        time.sleep(0.5)
        assert len(endpoint.requests) == 3, "acknowledged once, delivered once"
    finally:
        endpoint.close()


def test_http_endpoint_that_stays_down_goes_to_the_error_prefix(fh_server):
    endpoint = Endpoint(always_fail=True)
    try:
        fh = fh_server.client("firehose")
        fh.create_delivery_stream(DeliveryStreamName="down", HttpEndpointDestinationConfiguration=http_destination(
            endpoint.url, RetryOptions={"DurationInSeconds": 2}))
        fh.put_record(DeliveryStreamName="down", Record={"Data": b"nobody listens"})
        backup = fh_server.data_dir / "buckets" / "backup"
        found = wait_for(lambda: objects(backup), what="the batch under the error prefix")
        key, path = next(iter(found.items()))
        assert key.startswith("failed/http-endpoint-failed/"), key
        assert path.read_bytes() == b"nobody listens"
        assert len(endpoint.requests) >= 2, "retried before giving up"
    finally:
        endpoint.close()


def test_kill9_loses_no_acknowledged_record(data_dir):
    s = Server(data_dir, keys=KEYS).start()
    fh = s.client("firehose")
    # A long interval: records wait in the backlog when the server dies.
    fh.create_delivery_stream(DeliveryStreamName="crash", ExtendedS3DestinationConfiguration=s3_destination(
        "crash", BufferingHints={"SizeInMBs": 128, "IntervalInSeconds": 900},
        ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}))
    acked = []
    stop = threading.Event()

    def produce(worker):
        client = s.client("firehose")
        n = 0
        while not stop.is_set():
            batch = [f"w{worker}-{n + j}".encode() for j in range(50)]
            try:
                r = client.put_record_batch(DeliveryStreamName="crash", Records=[{"Data": b} for b in batch])
            except Exception:
                return
            acked.extend(b.decode() for b, e in zip(batch, r["RequestResponses"]) if "RecordId" in e)
            n += 50
    threads = [threading.Thread(target=produce, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 3000, what="3000 acknowledged records")
    s.kill9()
    stop.set()
    for t in threads:
        t.join()
    s = Server(data_dir, keys=KEYS).start()
    try:
        fh = s.client("firehose")
        fh.update_destination(DeliveryStreamName="crash", CurrentDeliveryStreamVersionId="1",
                              DestinationId="destinationId-000000000001",
                              ExtendedS3DestinationUpdate={"BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}})
        bucket = data_dir / "buckets" / "crash"

        def all_there():
            got = set("".join(p.read_text() for p in objects(bucket).values()).splitlines())
            return got if got >= set(acked) else None
        wait_for(all_there, timeout=60, what=f"all {len(acked)} acknowledged records delivered")
    finally:
        s.stop()


def test_a_kinesis_data_stream_as_source(fh_server):
    kinesis = fh_server.client("kinesis")
    kinesis.create_stream(StreamName="events", ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName="events")["StreamDescriptionSummary"]["StreamARN"]
    fh = fh_server.client("firehose")
    fh.create_delivery_stream(
        DeliveryStreamName="from-kinesis", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=s3_destination(
            "archive", ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}))
    desc = fh.describe_delivery_stream(DeliveryStreamName="from-kinesis")["DeliveryStreamDescription"]
    assert desc["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert desc["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == arn
    with pytest.raises(ClientError) as e:
        fh.put_record(DeliveryStreamName="from-kinesis", Record={"Data": b"not here"})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    kinesis.put_records(StreamName="events", Records=[{"Data": f"detection {i}".encode(), "PartitionKey": f"cam{i}"}
                                                      for i in range(50)])
    bucket = fh_server.data_dir / "buckets" / "archive"
    lines = wait_for(lambda: (l := sorted("".join(p.read_text() for p in objects(bucket).values()).splitlines()))
                     and len(l) >= 50 and l, what="50 records from the data stream")
    assert lines == sorted(f"detection {i}" for i in range(50))
    assert fh.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")["DeliveryStreamNames"] == ["from-kinesis"]
    assert fh.list_delivery_streams(DeliveryStreamType="DirectPut")["DeliveryStreamNames"] == []


def test_a_bucket_in_an_s3_compatible_store(data_dir):
    """`[buckets.NAME]` sends a bucket's objects to an S3-compatible server (moto's, here)."""
    import sys
    import boto3
    from conftest import free_port
    port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="moto", aws_secret_access_key="moto")
        wait_for(lambda: _up(s3), what="moto's S3")
        s3.create_bucket(Bucket="remote-archive")
        config = data_dir / "kinescope.toml"
        config.write_text(f'[buckets.archive]\nendpoint = "http://127.0.0.1:{port}"\nregion = "us-east-1"\n'
                          'access_key_id = "moto"\nsecret_access_key = "moto"\nbucket = "remote-archive"\n')
        s = Server(data_dir, keys=KEYS, extra_args=["--config", str(config)]).start()
        try:
            fh = s.client("firehose")
            fh.create_delivery_stream(DeliveryStreamName="to-s3", ExtendedS3DestinationConfiguration=s3_destination(
                "archive", Prefix="events/", CompressionFormat="GZIP"))
            fh.put_record_batch(DeliveryStreamName="to-s3", Records=[{"Data": f"e{i}\n".encode()} for i in range(10)])

            def listed():
                return s3.list_objects_v2(Bucket="remote-archive").get("Contents")
            objs = wait_for(listed, what="an object in the S3 store")
            key = objs[0]["Key"]
            assert key.startswith("events/") and key.endswith(".gz") and "/to-s3-1-" in key, key
            body = gzip.decompress(s3.get_object(Bucket="remote-archive", Key=key)["Body"].read()).decode()
            assert body == "".join(f"e{i}\n" for i in range(10))
            assert not (data_dir / "buckets" / "archive").exists(), "nothing written locally"
        finally:
            s.stop()
    finally:
        moto.terminate()
        moto.wait(10)


def _up(s3):
    try:
        s3.list_buckets()
        return True
    except Exception:
        return False


class Function(JsonServer):
    """An HTTP function speaking the Lambda record-transformation contract: upper-cases
    records, drops those that say "drop", fails those that say "fail"."""

    def __init__(self):
        def respond(_headers, req):
            out = []
            for r in req["records"]:
                data = base64.b64decode(r["data"])
                result = "Dropped" if b"drop" in data else "ProcessingFailed" if b"fail" in data else "Ok"
                out.append({"recordId": r["recordId"], "result": result, "data": base64.b64encode(data.upper()).decode()})
            return 200, {"records": out}
        super().__init__(respond, "transform")

    @property
    def invocations(self):
        return [req for _, req in self.requests]


def test_lambda_processor_and_dynamic_partitioning(data_dir):
    function = Function()
    config = data_dir / "kinescope.toml"
    config.write_text(f'[functions.upper]\nurl = "{function.url}"\n')
    s = Server(data_dir, keys=KEYS, extra_args=["--config", str(config)]).start()
    try:
        fh = s.client("firehose")
        with pytest.raises(ClientError) as e:
            fh.create_delivery_stream(DeliveryStreamName="nofn", ExtendedS3DestinationConfiguration=s3_destination(
                "x", ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:123456789012:function:missing"}]}]}))
        assert "[functions.missing]" in e.value.response["Error"]["Message"]
        fh.create_delivery_stream(DeliveryStreamName="cv", ExtendedS3DestinationConfiguration=s3_destination(
            "cv", Prefix="cam=!{partitionKeyFromQuery:cam}/", ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
            DynamicPartitioningConfiguration={"Enabled": True},
            ProcessingConfiguration={"Enabled": True, "Processors": [
                {"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:123456789012:function:upper"},
                    {"ParameterName": "NumberOfRetries", "ParameterValue": "1"}]},
                {"Type": "MetadataExtraction", "Parameters": [
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{cam: .CAM}"},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
                {"Type": "AppendDelimiterToRecord"}]}))
        records = [{"cam": "door", "label": "person"}, {"cam": "yard", "label": "cat"},
                   {"cam": "door", "label": "drop me"}, {"cam": "door", "label": "fail me"}]
        fh.put_record_batch(DeliveryStreamName="cv", Records=[{"Data": json.dumps(r).encode()} for r in records])
        bucket = data_dir / "buckets" / "cv"

        def read_under(prefix):
            return "".join(p.read_text() for p in objects(bucket / prefix).values())
        wait_for(lambda: read_under("errors/processing-failed"), what="the failed record under the error prefix")
        wait_for(lambda: read_under("cam=YARD"), what="the YARD partition")
        assert read_under("cam=DOOR") == '{"CAM": "DOOR", "LABEL": "PERSON"}\n'
        assert read_under("cam=YARD") == '{"CAM": "YARD", "LABEL": "CAT"}\n'
        failure = json.loads(read_under("errors/processing-failed"))
        assert failure["errorCode"] == "Lambda.ProcessingFailedStatus"
        assert json.loads(base64.b64decode(failure["rawData"])) == records[3]
        assert len(function.invocations) == 1 and len(function.invocations[0]["records"]) == 4
        assert function.invocations[0]["deliveryStreamArn"].endswith(":deliverystream/cv")
    finally:
        s.stop()
        function.close()


def test_zip_and_record_deaggregation(fh_server):
    """ZIP objects open with Python's zipfile; RecordDeAggregation splits concatenated
    JSON records before the delimiter is added."""
    import io
    import zipfile
    fh = fh_server.client("firehose")
    fh.create_delivery_stream(DeliveryStreamName="zipped", ExtendedS3DestinationConfiguration=s3_destination(
        "zips", CompressionFormat="ZIP", ProcessingConfiguration={"Enabled": True, "Processors": [
            {"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]},
            {"Type": "AppendDelimiterToRecord"}]}))
    fh.put_record(DeliveryStreamName="zipped", Record={"Data": b'{"box":1}{"box":2}{"box":3}'})
    found = wait_for(lambda: objects(fh_server.data_dir / "buckets" / "zips"), what="a ZIP object")
    key, path = next(iter(found.items()))
    assert key.endswith(".zip"), key
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as z:
        (entry,) = z.namelist()
        assert z.testzip() is None
        assert z.read(entry) == b'{"box":1}\n{"box":2}\n{"box":3}\n'
        assert entry == key.rsplit("/", 1)[1].removesuffix(".zip")


def test_json_records_converted_to_parquet(data_dir):
    """DataFormatConversionConfiguration: JSON records to Parquet, the schema from
    [tables.DB.TABLE] where AWS reads Glue; read back with pyarrow."""
    import io
    import pyarrow.parquet as pq
    config = data_dir / "kinescope.toml"
    config.write_text('[tables.vision.detections]\ncolumns = [{ name = "camera", type = "string" }, '
                      '{ name = "score", type = "double" }, { name = "frame", type = "bigint" }]\n')
    s = Server(data_dir, keys=KEYS, extra_args=["--config", str(config)]).start()
    try:
        fh = s.client("firehose")
        conversion = {"Enabled": True,
                      "SchemaConfiguration": {"DatabaseName": "vision", "TableName": "detections", "RoleARN": ROLE},
                      "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                      "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}}}
        with pytest.raises(ClientError) as e:
            fh.create_delivery_stream(DeliveryStreamName="nope", ExtendedS3DestinationConfiguration=s3_destination(
                "pq", DataFormatConversionConfiguration={**conversion, "SchemaConfiguration": {
                    "DatabaseName": "vision", "TableName": "missing", "RoleARN": ROLE}}))
        assert "[tables.vision.missing]" in e.value.response["Error"]["Message"]
        fh.create_delivery_stream(DeliveryStreamName="to-parquet", ExtendedS3DestinationConfiguration=s3_destination(
            "pq", Prefix="detections/", ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
            DataFormatConversionConfiguration=conversion))
        rows = [{"camera": "door", "score": 0.91, "frame": 1, "boxes": [[1, 2, 3, 4]]},
                {"camera": "yard", "score": 0.42, "frame": 2}]
        fh.put_record_batch(DeliveryStreamName="to-parquet",
                            Records=[{"Data": json.dumps(r).encode()} for r in rows] + [{"Data": b'{"frame": "x"}'}])
        bucket = data_dir / "buckets" / "pq"
        files = wait_for(lambda: [p for k, p in objects(bucket).items() if k.startswith("detections/")],
                         what="a Parquet object")
        table = pq.read_table(io.BytesIO(files[0].read_bytes()))
        assert table.column_names == ["camera", "score", "frame"]
        assert table.to_pylist() == [{"camera": "door", "score": 0.91, "frame": 1},
                                     {"camera": "yard", "score": 0.42, "frame": 2}]
        failed = wait_for(lambda: [p for k, p in objects(bucket).items()
                                   if k.startswith("errors/format-conversion-failed/")], what="the bad record")
        failure = json.loads(failed[0].read_text())
        assert failure["errorCode"] == "DataFormatConversion.MalformedData"
        assert base64.b64decode(failure["rawData"]) == b'{"frame": "x"}'
    finally:
        s.stop()


def test_source_records_backed_up_before_processing(fh_server):
    fh = fh_server.client("firehose")
    fh.create_delivery_stream(DeliveryStreamName="backed", ExtendedS3DestinationConfiguration=s3_destination(
        "main", S3BackupMode="Enabled", S3BackupConfiguration=s3_destination("raw", Prefix="source/"),
        ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}))
    desc = fh.describe_delivery_stream(DeliveryStreamName="backed")["DeliveryStreamDescription"]
    backup = desc["Destinations"][0]["ExtendedS3DestinationDescription"]["S3BackupDescription"]
    assert backup["BucketARN"] == "arn:aws:s3:::raw" and backup["Prefix"] == "source/"
    fh.put_record_batch(DeliveryStreamName="backed", Records=[{"Data": b"a"}, {"Data": b"b"}])
    buckets = fh_server.data_dir / "buckets"
    main = wait_for(lambda: objects(buckets / "main"), what="the processed object")
    raw = wait_for(lambda: objects(buckets / "raw"), what="the source backup")
    assert next(iter(main.values())).read_bytes() == b"a\nb\n"
    key, path = next(iter(raw.items()))
    assert key.startswith("source/") and path.read_bytes() == b"ab"
