"""Kinesis Video control plane through boto3's `kinesisvideo` client and the aws CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import Server


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_create_describe_list_update_delete(server):
    kv = server.client("kinesisvideo")
    arn = kv.create_stream(StreamName="cam-1", MediaType="video/h264", DataRetentionInHours=48, Tags={"site": "lobby"})["StreamARN"]
    assert arn.startswith("arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam-1/")

    info = kv.describe_stream(StreamName="cam-1")["StreamInfo"]
    assert info["StreamARN"] == arn
    assert info["Status"] == "ACTIVE"
    assert info["DataRetentionInHours"] == 48
    assert info["MediaType"] == "video/h264"
    assert kv.describe_stream(StreamARN=arn)["StreamInfo"]["StreamName"] == "cam-1"

    # Default retention is the product's 24 hours, not AWS's 0.
    kv.create_stream(StreamName="cam-2")
    assert kv.describe_stream(StreamName="cam-2")["StreamInfo"]["DataRetentionInHours"] == 24
    kv.create_stream(StreamName="door-1", DataRetentionInHours=0)

    with pytest.raises(ClientError) as e:
        kv.create_stream(StreamName="cam-1")
    assert error_code(e) == ("ResourceInUseException", 400)

    names = [s["StreamName"] for s in kv.list_streams()["StreamInfoList"]]
    assert names == ["cam-1", "cam-2", "door-1"]
    page = kv.list_streams(MaxResults=1)
    assert [s["StreamName"] for s in page["StreamInfoList"]] == ["cam-1"]
    page2 = kv.list_streams(MaxResults=1, NextToken=page["NextToken"])
    assert [s["StreamName"] for s in page2["StreamInfoList"]] == ["cam-2"]
    cond = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": "cam"}
    assert [s["StreamName"] for s in kv.list_streams(StreamNameCondition=cond)["StreamInfoList"]] == ["cam-1", "cam-2"]
    # Paginators work too.
    pages = kv.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 2})
    assert sum(len(p["StreamInfoList"]) for p in pages) == 3

    version = info["Version"]
    kv.update_stream(StreamName="cam-1", CurrentVersion=version, MediaType="video/h265")
    with pytest.raises(ClientError) as e:
        kv.update_stream(StreamName="cam-1", CurrentVersion=version, MediaType="video/h264")
    assert error_code(e) == ("VersionMismatchException", 400)
    info = kv.describe_stream(StreamName="cam-1")["StreamInfo"]
    assert info["MediaType"] == "video/h265" and info["Version"] != version

    kv.update_data_retention(StreamName="cam-1", CurrentVersion=info["Version"], Operation="INCREASE_DATA_RETENTION", DataRetentionChangeInHours=24)
    info = kv.describe_stream(StreamName="cam-1")["StreamInfo"]
    assert info["DataRetentionInHours"] == 72
    kv.update_data_retention(StreamARN=arn, CurrentVersion=info["Version"], Operation="DECREASE_DATA_RETENTION", DataRetentionChangeInHours=70)
    info = kv.describe_stream(StreamName="cam-1")["StreamInfo"]
    assert info["DataRetentionInHours"] == 2
    with pytest.raises(ClientError) as e:
        kv.update_data_retention(StreamARN=arn, CurrentVersion=info["Version"], Operation="DECREASE_DATA_RETENTION", DataRetentionChangeInHours=3)
    assert error_code(e) == ("InvalidArgumentException", 400)

    for api in ["PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST", "GET_HLS_STREAMING_SESSION_URL",
                "GET_DASH_STREAMING_SESSION_URL", "GET_CLIP", "GET_IMAGES"]:
        assert kv.get_data_endpoint(StreamName="cam-1", APIName=api)["DataEndpoint"] == server.url

    with pytest.raises(ClientError) as e:
        kv.delete_stream(StreamARN=arn, CurrentVersion="stale")
    assert error_code(e) == ("VersionMismatchException", 400)
    kv.delete_stream(StreamARN=arn, CurrentVersion=info["Version"])
    with pytest.raises(ClientError) as e:
        kv.describe_stream(StreamName="cam-1")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        kv.delete_stream(StreamARN=arn)
    assert error_code(e) == ("ResourceNotFoundException", 404)


def test_validation_errors(server):
    kv = server.client("kinesisvideo", parameter_validation=False)
    for bad in ["", "has/slash", "x" * 257, "spaces no"]:
        with pytest.raises(ClientError) as e:
            kv.create_stream(StreamName=bad)
        assert error_code(e) == ("InvalidArgumentException", 400), bad
    with pytest.raises(ClientError) as e:
        kv.create_stream(StreamName="ok", MediaType="not-a-mime")
    assert error_code(e) == ("InvalidArgumentException", 400)
    with pytest.raises(ClientError) as e:
        kv.create_stream(StreamName="ok", DataRetentionInHours=-1)
    assert error_code(e) == ("InvalidArgumentException", 400)
    with pytest.raises(ClientError) as e:
        kv.create_stream(StreamName="ok", Tags={f"k{i}": "v" for i in range(51)})
    assert error_code(e) == ("TagsPerResourceExceededLimitException", 400)
    with pytest.raises(ClientError) as e:
        kv.get_data_endpoint(StreamName="missing", APIName="GET_MEDIA")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    kv.create_stream(StreamName="ok")
    with pytest.raises(ClientError) as e:
        kv.get_data_endpoint(StreamName="ok", APIName="NOT_AN_API")
    assert error_code(e) == ("InvalidArgumentException", 400)
    with pytest.raises(ClientError) as e:
        kv.describe_stream(StreamARN="arn:aws:kinesisvideo:us-east-1:000000000000:stream/ok/1")
    assert error_code(e) == ("ResourceNotFoundException", 404)


def test_tags(server):
    kv = server.client("kinesisvideo")
    arn = kv.create_stream(StreamName="tagged", Tags={"a": "1"})["StreamARN"]
    kv.tag_stream(StreamName="tagged", Tags={"b": "2", "c": "3"})
    assert kv.list_tags_for_stream(StreamName="tagged")["Tags"] == {"a": "1", "b": "2", "c": "3"}
    kv.untag_stream(StreamARN=arn, TagKeyList=["a"])
    assert kv.list_tags_for_stream(StreamARN=arn)["Tags"] == {"b": "2", "c": "3"}
    kv.tag_resource(ResourceARN=arn, Tags=[{"Key": "d", "Value": "4"}])
    kv.untag_resource(ResourceARN=arn, TagKeyList=["b"])
    assert kv.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"c": "3", "d": "4"}
    with pytest.raises(ClientError) as e:
        kv.tag_stream(StreamName="tagged", Tags={f"k{i}": "v" for i in range(49)})
    assert error_code(e) == ("TagsPerResourceExceededLimitException", 400)


def test_streams_persist_across_restart(data_dir):
    s = Server(data_dir).start()
    kv = s.client("kinesisvideo")
    arn = kv.create_stream(StreamName="durable", DataRetentionInHours=5, Tags={"k": "v"})["StreamARN"]
    s.stop()
    s = Server(data_dir).start()
    try:
        kv = s.client("kinesisvideo")
        info = kv.describe_stream(StreamName="durable")["StreamInfo"]
        assert info["StreamARN"] == arn and info["DataRetentionInHours"] == 5
        assert kv.list_tags_for_stream(StreamName="durable")["Tags"] == {"k": "v"}
    finally:
        s.stop()


def test_aws_cli(server):
    aws = Path(sys.executable).parent / "aws"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="us-east-1")

    def run(*args):
        p = subprocess.run([str(aws), "--endpoint-url", server.url, "kinesisvideo", *args, "--output", "json"],
                           capture_output=True, text=True, env=env, timeout=60)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = run("create-stream", "--stream-name", "cli-cam", "--data-retention-in-hours", "12")
    assert rc == 0, err
    assert json.loads(out)["StreamARN"].endswith(tuple("0123456789"))
    rc, out, err = run("describe-stream", "--stream-name", "cli-cam")
    assert rc == 0 and json.loads(out)["StreamInfo"]["DataRetentionInHours"] == 12
    rc, out, err = run("describe-stream", "--stream-name", "nope")
    assert rc != 0 and "ResourceNotFoundException" in err


def test_health_metrics_and_unknown_operation(server):
    import urllib.request
    import urllib.error

    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="m")
    with urllib.request.urlopen(server.url + "/metrics") as r:
        text = r.read().decode()
    assert 'kinescope_requests_total{api="CreateStream",status="200"} 1' in text
    assert "kinescope_put_media_ack_latency_seconds_bucket" in text
    req = urllib.request.Request(server.url + "/noSuchOperation", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 404
    assert e.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert e.value.headers["x-amzn-RequestId"]
    req = urllib.request.Request(server.url + "/", data=b"{}", method="POST", headers={"X-Amz-Target": "NoSuchService_20200101.ListThings", "Content-Type": "application/x-amz-json-1.0"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert json.loads(e.value.read())["__type"] == "UnknownOperationException"


def test_sigterm_shuts_down_gracefully_with_a_reader_attached(data_dir):
    import signal
    s = Server(data_dir).start()
    s.client("kinesisvideo").create_stream(StreamName="follow")
    media = s.client("kinesis-video-media", read_timeout=30)
    resp = media.get_media(StreamName="follow", StartSelector={"StartSelectorType": "NOW"})
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(15) == 0
    assert any("stopped" in line for line in s.log)
    resp["Payload"].close()


def test_health_command_is_the_container_health_check(server):
    """`kinescope health`, the Docker HEALTHCHECK: exit 0 while the server answers, 1 once
    it is gone (with what went wrong on stderr)."""
    from conftest import BIN
    ok = subprocess.run([BIN, "health", "--url", server.url], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    server.stop()
    down = subprocess.run([BIN, "health", "--url", server.url, "--timeout-secs", "2"], capture_output=True, text=True,
                          timeout=30)
    assert down.returncode == 1 and "/health" in down.stderr
