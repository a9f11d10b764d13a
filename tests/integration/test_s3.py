"""The buckets read through S3's REST API, as a computer-vision program on another
machine reads what its events point at: boto3's s3 client (list, head, get with
ranges and conditions, presigned GETs fetched with plain HTTP), the aws CLI (`aws s3
ls`, `aws s3 cp` down), S3's XML errors, and accounts kept apart."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, FIXTURES, SECRET_KEY, Server, java_sdk_jars, run_js, wait_for

KEYS = (ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def s3_server(signed_server):
    """A server with access keys: S3 requests are verified as AWS verifies them."""
    return signed_server


def images_in_a_bucket(server, stream="s3-cam", bucket="frames"):
    """Image generation writes JPEGs of a pushed stream into `bucket`; returns the
    IMAGE events' (key, uri, bytes), as a CV program is told about them."""
    kv = server.client("kinesisvideo")
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=f"{stream}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    kv.create_stream(StreamName=stream, DataRetentionInHours=24)
    kv.update_notification_configuration(
        StreamName=stream, NotificationConfiguration={"Status": "ENABLED", "DestinationConfig": {"Uri": arn}})
    kv.update_image_generation_configuration(StreamName=stream, ImageGenerationConfiguration={
        "Status": "ENABLED", "ImageSelectorType": "PRODUCER_TIMESTAMP",
        "DestinationConfig": {"Uri": f"s3://{bucket}/cams", "DestinationRegion": "us-east-1"},
        "SamplingInterval": 500, "Format": "JPEG", "WidthPixels": 160})
    server.put(stream, FIXTURES / "av.mp4", env_keys=KEYS)
    images = []
    deadline = time.time() + 60
    while len(images) < 8 and time.time() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            e = json.loads(m["Body"])
            if e["type"] == "IMAGE":
                images.append((e["key"], e["uri"], e["bytes"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert len(images) == 8, images
    return sorted(images)


def test_a_cv_program_reads_the_frames_its_events_point_at_through_s3(s3_server, tmp_path):
    images = images_in_a_bucket(s3_server)
    s3 = s3_server.client("s3")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["frames"]
    s3.head_bucket(Bucket="frames")
    for key, uri, size in images:
        assert uri == f"s3://frames/{key}"
        got = s3.get_object(Bucket="frames", Key=key)
        body = got["Body"].read()
        assert len(body) == size == got["ContentLength"] and body[:2] == b"\xff\xd8"
        assert got["ContentType"] == "image/jpeg"
    key = images[0][0]
    head = s3.head_object(Bucket="frames", Key=key)
    assert head["ContentLength"] == images[0][2] and head["ETag"].startswith('"')
    # Ranges, and conditional GETs answered 304.
    part = s3.get_object(Bucket="frames", Key=key, Range="bytes=0-9")
    assert part["Body"].read() == s3.get_object(Bucket="frames", Key=key)["Body"].read()[:10]
    assert part["ContentRange"] == f"bytes 0-9/{images[0][2]}"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="frames", Key=key, IfNoneMatch=head["ETag"])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="frames", Key=key, Range=f"bytes={images[0][2] + 10}-")
    assert e.value.response["Error"]["Code"] == "InvalidRange"

    # ListObjectsV2: prefixes, a delimiter, pages with continuation tokens, StartAfter.
    listed = s3.list_objects_v2(Bucket="frames")
    assert [o["Key"] for o in listed["Contents"]] == [k for k, _, _ in images]
    assert [o["Size"] for o in listed["Contents"]] == [b for _, _, b in images]
    folded = s3.list_objects_v2(Bucket="frames", Delimiter="/")
    assert [p["Prefix"] for p in folded["CommonPrefixes"]] == ["cams/"] and "Contents" not in folded
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="frames", Prefix="cams/", PaginationConfig={"PageSize": 3}):
        assert page["KeyCount"] <= 3
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert keys == [k for k, _, _ in images]
    after = s3.list_objects_v2(Bucket="frames", StartAfter=images[3][0])
    assert [o["Key"] for o in after["Contents"]] == [k for k, _, _ in images[4:]]

    # Presigned GETs work with plain HTTP, and only as signed: boto3's default (signature
    # version 2 for S3) and version 4.
    v4 = s3_server.client("s3", signature_version="s3v4")
    for client, signature in ((s3, "Signature="), (v4, "X-Amz-Signature=")):
        url = client.generate_presigned_url("get_object", Params={"Bucket": "frames", "Key": key}, ExpiresIn=300)
        assert signature in url
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.read()[:2] == b"\xff\xd8"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace(signature, signature + "0"), timeout=10)
        assert e.value.code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in e.value.read()

    # The aws CLI: ls and cp down.
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    aws = str(Path(sys.executable).parent / "aws")
    ls = subprocess.run([aws, "--endpoint-url", s3_server.url, "s3", "ls", "s3://frames/", "--recursive"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert [line.split()[-1] for line in ls.stdout.splitlines()] == [k for k, _, _ in images]
    out = tmp_path / "frame.jpg"
    cp = subprocess.run([aws, "--endpoint-url", s3_server.url, "s3", "cp", f"s3://frames/{key}", str(out)],
                        capture_output=True, text=True, env=env, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert out.read_bytes() == s3.get_object(Bucket="frames", Key=key)["Body"].read()


def test_s3_errors_are_s3s_and_accounts_stay_apart(s3_server):
    images_in_a_bucket(s3_server, stream="own-cam", bucket="mine")
    s3 = s3_server.client("s3")

    def code(call, **kw):
        with pytest.raises(ClientError) as e:
            call(**kw)
        return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]

    assert code(s3.get_object, Bucket="nobucket", Key="x") == ("NoSuchBucket", 404)
    assert code(s3.get_object, Bucket="mine", Key="cams/none.jpg") == ("NoSuchKey", 404)
    assert code(s3.head_object, Bucket="mine", Key="cams/none.jpg")[1] == 404
    assert code(s3.put_object, Bucket="nobucket", Key="k", Body=b"x") == ("NoSuchBucket", 404)
    assert code(s3.create_bucket, Bucket="Bad_Name") == ("InvalidBucketName", 400)
    assert code(s3.delete_bucket, Bucket="mine") == ("BucketNotEmpty", 409)
    wrong = s3_server.client("s3", key=ACCESS_KEY, secret="not-the-secret")
    assert code(wrong.list_buckets) == ("SignatureDoesNotMatch", 403)
    unknown = s3_server.client("s3", key="AKIANOBODY0000000000", secret="x")
    assert code(unknown.list_buckets) == ("InvalidAccessKeyId", 403)
    # A bucket named like another route is still a bucket to S3's requests.
    assert code(s3.list_objects_v2, Bucket="health") == ("NoSuchBucket", 404)
    # Keys that try to leave the bucket find nothing.
    assert code(s3.get_object, Bucket="mine", Key="../../kinescope.toml")[0] == "NoSuchKey"


def test_the_operator_writes_and_deletes_with_boto3_and_the_aws_cli(s3_server, tmp_path):
    s3 = s3_server.client("s3")
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="uploads")  # its owner's again: 200, as us-east-1 answers
    assert "uploads" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB: the CLI's single-PUT path (under 8 MiB)
    src = tmp_path / "big.bin"
    src.write_bytes(big)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    aws = str(Path(sys.executable).parent / "aws")
    up = subprocess.run([aws, "--endpoint-url", s3_server.url, "s3", "cp", str(src), "s3://uploads/in/big.bin"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert up.returncode == 0, up.stderr
    assert s3.get_object(Bucket="uploads", Key="in/big.bin")["Body"].read() == big
    put = s3.put_object(Bucket="uploads", Key="notes/a.txt", Body=b"hello")
    assert put["ETag"] == s3.head_object(Bucket="uploads", Key="notes/a.txt")["ETag"]
    # A body that is not what the signed hash says leaves no object.
    bad = s3_server.client("s3")
    bad.meta.events.register("before-send.s3.PutObject",
                             lambda request, **_: setattr(request, "body", b"HELLO") or None)
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket="uploads", Key="notes/b.txt", Body=b"hello")
    assert e.value.response["Error"]["Code"] in ("XAmzContentSHA256Mismatch", "BadDigest")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="uploads")["Contents"]] == ["in/big.bin", "notes/a.txt"]
    s3.delete_object(Bucket="uploads", Key="notes/a.txt")
    s3.delete_object(Bucket="uploads", Key="notes/a.txt")  # already gone: still 204
    rm = subprocess.run([aws, "--endpoint-url", s3_server.url, "s3", "rm", "s3://uploads/in/big.bin"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert rm.returncode == 0, rm.stderr
    # DeleteObjects: boto3's batch, and `aws s3 rm --recursive`.
    for i in range(5):
        s3.put_object(Bucket="uploads", Key=f"batch/{i}.txt", Body=b"x")
    deleted = s3.delete_objects(Bucket="uploads", Delete={"Objects": [{"Key": "batch/0.txt"}, {"Key": "batch/1.txt"},
                                                                      {"Key": "never/there"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["batch/0.txt", "batch/1.txt", "never/there"]
    rm = subprocess.run([aws, "--endpoint-url", s3_server.url, "s3", "rm", "s3://uploads/batch/", "--recursive"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert rm.returncode == 0, rm.stderr
    assert s3.list_objects_v2(Bucket="uploads")["KeyCount"] == 0
    s3.delete_bucket(Bucket="uploads")
    assert "uploads" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_another_accounts_bucket_is_denied(data_dir):
    config = data_dir / "kinescope.toml"
    config.write_text('account_id = "000000000000"\n' + "".join(
        f'[[access_keys]]\nid = "{k}"\nsecret = "{s}"\naccount_id = "{a}"\n\n'
        for k, s, a in ((ACCESS_KEY, SECRET_KEY, "000000000000"), ("AKIAOTHERACCOUNT0001", "other-secret", "222222222222"))))
    s = Server(data_dir, extra_args=["--config", str(config)]).start()
    s.keys = KEYS
    try:
        images_in_a_bucket(s, stream="acct-cam", bucket="private")
        other = s.client("s3", key="AKIAOTHERACCOUNT0001", secret="other-secret")
        with pytest.raises(ClientError) as e:
            other.list_objects_v2(Bucket="private")
        assert e.value.response["Error"]["Code"] == "AccessDenied"
        assert other.list_buckets()["Buckets"] == []
        with pytest.raises(ClientError) as e:
            other.create_bucket(Bucket="private")
        assert e.value.response["Error"]["Code"] == "BucketAlreadyExists"
        with pytest.raises(ClientError) as e:
            other.put_object(Bucket="private", Key="x", Body=b"x")
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        s.stop()


def test_the_js_sdk_s3_client_puts_plain_and_aws_chunked_bodies(s3_server):
    """@aws-sdk/client-s3 with its defaults: a buffer body with its CRC32 in a header, a
    stream body aws-chunked (STREAMING-UNSIGNED-PAYLOAD-TRAILER, the CRC32 in a
    trailer); both read back intact, listed, headed, deleted."""
    seen = run_js("s3_sdk.mjs", s3_server.url)
    assert seen.get("ok"), seen
    assert seen["streamedIntact"] and seen["rangeIntact"], seen
    assert seen["bufferChecksum"] and seen["bufferChecksum"] == seen["streamChecksum"], seen
    assert seen["headLength"] == 3 << 20, seen
    assert seen["keys"] == ["buffer.bin", "dir/streamed.bin"] and seen["keysAfterDelete"] == ["dir/streamed.bin"], seen


def test_the_java_sdks_signer_uploads_with_signed_chunks_and_trailers(s3_server, tmp_path):
    """The Java SDK 2.x signer its S3 client uses, chunk-signed over plain HTTP: every
    chunk's signature and the trailer's are checked; a payload changed after signing is
    refused with SignatureDoesNotMatch and leaves no object."""
    s3 = s3_server.client("s3")
    s3.create_bucket(Bucket="java")
    root = Path(__file__).resolve().parents[2]
    cp = f"{tmp_path}:{java_sdk_jars()}/*"
    subprocess.run(["javac", "-d", str(tmp_path), "-cp", cp, str(root / "tests" / "java" / "S3ChunkedSigner.java")],
                   check=True, timeout=180)
    size = 300_000  # five 64 KiB chunks and a short one
    run = lambda *extra: subprocess.run(
        ["java", "-cp", cp, "S3ChunkedSigner", s3_server.url, "us-east-1", ACCESS_KEY, SECRET_KEY, "java", str(size),
         *extra], capture_output=True, text=True, timeout=180)
    p = run()
    assert p.returncode == 0, p.stderr
    lines = dict(line.split("=", 1) for line in p.stdout.splitlines())
    assert lines["signed"].startswith("200 STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), lines
    assert lines["signed-trailer"].startswith("200 STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"), lines
    expected = bytes((i * 31 + (i >> 9)) & 0xFF for i in range(size))
    for name in ("signed", "signed-trailer"):
        assert s3.get_object(Bucket="java", Key=f"java/{name}.bin")["Body"].read() == expected
    s3.delete_objects(Bucket="java", Delete={"Objects": [{"Key": "java/signed.bin"}, {"Key": "java/signed-trailer.bin"}]})
    p = run("tamper")
    assert p.returncode == 0, p.stderr
    for line in p.stdout.splitlines():
        assert line.split("=", 1)[1].startswith("403") and "SignatureDoesNotMatch" in line, line
    assert s3.list_objects_v2(Bucket="java")["KeyCount"] == 0


def test_virtual_hosted_addressing_names_the_bucket_in_the_host(s3_server, monkeypatch):
    """`http://BUCKET.localhost:PORT/KEY`, as boto3 writes requests with
    addressing_style=virtual: put, get, list, presigned URLs of both versions. (This
    machine's resolver does not know `*.localhost`: the test process maps it to
    127.0.0.1, as browsers and curl do.)"""
    import socket
    import boto3
    from botocore.config import Config

    real = socket.getaddrinfo

    def resolve(host, *args, **kw):
        return real("127.0.0.1" if str(host).endswith(".localhost") else host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = s3_server.url.rsplit(":", 1)[1]
    s3_server.client("s3").create_bucket(Bucket="vhost")
    vclient = lambda **cfg: boto3.client(
        "s3", endpoint_url=f"http://localhost:{port}", region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, config=Config(s3={"addressing_style": "virtual"},
                                                        retries={"total_max_attempts": 1, "mode": "standard"}, **cfg))
    s3 = vclient()
    seen = []
    s3.meta.events.register("before-send", lambda request, **_: seen.append(request.url) or None)
    s3.put_object(Bucket="vhost", Key="cams/a b.txt", Body=b"virtual")
    assert seen[-1].startswith(f"http://vhost.localhost:{port}/cams/a%20b.txt"), seen
    assert s3.get_object(Bucket="vhost", Key="cams/a b.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="vhost", Prefix="cams/")["Contents"]] == ["cams/a b.txt"]
    # Presigned URLs: boto3's default (version 2 query) and s3v4.
    for presigner in (s3, vclient(signature_version="s3v4")):
        url = presigner.generate_presigned_url("get_object", Params={"Bucket": "vhost", "Key": "cams/a b.txt"})
        assert url.startswith(f"http://vhost.localhost:{port}/"), url
        assert urllib.request.urlopen(url, timeout=10).read() == b"virtual"
    # Header-signed version 2 (boto3's legacy "s3" signer): refused as S3 refuses it now.
    with pytest.raises(ClientError) as e:
        vclient(signature_version="s3").list_objects_v2(Bucket="vhost")
    assert e.value.response["Error"]["Code"] == "InvalidRequest", e.value.response
    assert "AWS4-HMAC-SHA256" in e.value.response["Error"]["Message"]
    s3.delete_object(Bucket="vhost", Key="cams/a b.txt")


def aws_cli(server, *args, timeout=180):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    aws = str(Path(sys.executable).parent / "aws")
    p = subprocess.run([aws, "--endpoint-url", server.url, *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_multipart_uploads_from_the_aws_cli_and_boto3(s3_server, tmp_path):
    """Past 8 MiB the aws CLI and boto3's transfer manager upload in parts: both round
    trip 20 MiB intact; a boto3 upload started and aborted leaves nothing; parts and
    uploads in progress are listed; completion checks what it is given."""
    s3 = s3_server.client("s3")
    s3.create_bucket(Bucket="clips")
    big = os.urandom(20 << 20)
    src = tmp_path / "clip.bin"
    src.write_bytes(big)
    aws_cli(s3_server, "s3", "cp", str(src), "s3://clips/cli/clip.bin")
    back = tmp_path / "back.bin"
    aws_cli(s3_server, "s3", "cp", "s3://clips/cli/clip.bin", str(back))
    assert back.read_bytes() == big
    s3.upload_file(str(src), "clips", "boto3/clip.bin")
    assert s3.get_object(Bucket="clips", Key="boto3/clip.bin")["Body"].read() == big
    # By hand: parts listed, an upload in progress listed, then aborted.
    up = s3.create_multipart_upload(Bucket="clips", Key="hand/clip.bin")["UploadId"]
    e1 = s3.upload_part(Bucket="clips", Key="hand/clip.bin", UploadId=up, PartNumber=1, Body=big[:5 << 20])["ETag"]
    e2 = s3.upload_part(Bucket="clips", Key="hand/clip.bin", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    assert [(p["PartNumber"], p["Size"]) for p in s3.list_parts(Bucket="clips", Key="hand/clip.bin", UploadId=up)["Parts"]] \
        == [(1, 5 << 20), (2, 4)]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="clips")["Uploads"]] == [up]

    def code(call, **kw):
        with pytest.raises(ClientError) as e:
            call(**kw)
        return e.value.response["Error"]["Code"]

    done = lambda parts: s3.complete_multipart_upload(Bucket="clips", Key="hand/clip.bin", UploadId=up,
                                                      MultipartUpload={"Parts": parts})
    assert code(done, parts=[{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]) == "InvalidPartOrder"
    assert code(done, parts=[{"PartNumber": 1, "ETag": '"0000"'}]) == "InvalidPart"
    assert code(s3.upload_part, Bucket="clips", Key="hand/clip.bin", UploadId="f" * 32, PartNumber=1,
                Body=b"x") == "NoSuchUpload"
    assert code(s3.upload_part, Bucket="clips", Key="hand/clip.bin", UploadId=up, PartNumber=10001,
                Body=b"x") == "InvalidArgument"
    s3.abort_multipart_upload(Bucket="clips", Key="hand/clip.bin", UploadId=up)
    assert s3.list_multipart_uploads(Bucket="clips").get("Uploads", []) == []
    assert code(s3.head_object, Bucket="clips", Key="hand/clip.bin") == "404"
    # A small object put together from two parts, the first at the 5 MiB minimum.
    up = s3.create_multipart_upload(Bucket="clips", Key="hand/two.bin")["UploadId"]
    e1 = s3.upload_part(Bucket="clips", Key="hand/two.bin", UploadId=up, PartNumber=1, Body=big[:5 << 20])["ETag"]
    e2 = s3.upload_part(Bucket="clips", Key="hand/two.bin", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    s3.complete_multipart_upload(Bucket="clips", Key="hand/two.bin", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert s3.get_object(Bucket="clips", Key="hand/two.bin")["Body"].read() == big[:5 << 20] + b"tail"
    # CopyObject is refused, not taken for an empty upload.
    assert code(s3.copy_object, Bucket="clips", Key="copy.bin",
                CopySource={"Bucket": "clips", "Key": "hand/two.bin"}) == "NotImplemented"
    assert code(s3.head_object, Bucket="clips", Key="copy.bin") == "404"


def test_a_delivery_streams_prefix_syncs_with_the_aws_cli_under_temporary_credentials(s3_server, tmp_path):
    """What a reader on another machine does with a delivery stream's output: `aws s3
    sync` of its prefix (twice: the second run copies only what is new), signed with
    temporary credentials from STS (GetSessionToken), as a CI job or a role would."""
    fh = s3_server.client("firehose")
    fh.create_delivery_stream(
        DeliveryStreamName="dets", DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::detections",
            "Prefix": "cams/cam1/", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}})
    s3 = s3_server.client("s3")

    def delivered(n):
        def check():
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="detections", Prefix="cams/cam1/").get("Contents", [])]
            return keys if len(keys) >= n else None
        return wait_for(check, what=f"{n} delivered objects")

    fh.put_record(DeliveryStreamName="dets", Record={"Data": b'{"frame":1}\n'})
    first = delivered(1)
    creds = s3_server.client("sts").get_session_token()["Credentials"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SESSION_TOKEN=creds["SessionToken"], AWS_DEFAULT_REGION="us-east-1")
    aws = str(Path(sys.executable).parent / "aws")
    out = tmp_path / "mirror"
    sync = lambda: subprocess.run([aws, "--endpoint-url", s3_server.url, "s3", "sync", "s3://detections/cams/", str(out)],
                                  capture_output=True, text=True, env=env, timeout=120)
    p = sync()
    assert p.returncode == 0, p.stderr
    mirrored = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    assert mirrored == sorted(k.removeprefix("cams/") for k in first), (mirrored, first)
    fh.put_record(DeliveryStreamName="dets", Record={"Data": b'{"frame":2}\n'})
    both = delivered(len(first) + 1)
    p = sync()
    assert p.returncode == 0, p.stderr
    copied = [line for line in p.stdout.splitlines() if line.startswith("download:")]
    assert len(copied) == len(both) - len(first), p.stdout
    text = "".join(f.read_text() for f in sorted(out.rglob("*")) if f.is_file())
    assert sorted(text.split()) == ['{"frame":1}', '{"frame":2}']
    # A tampered session token is refused in S3's words.
    bad = dict(env, AWS_SESSION_TOKEN=creds["SessionToken"][:-4] + "AAAA")
    p = subprocess.run([aws, "--endpoint-url", s3_server.url, "s3", "ls", "s3://detections/"], capture_output=True,
                       text=True, env=bad, timeout=60)
    assert p.returncode != 0 and "InvalidToken" in p.stderr, p.stderr
