"""Kinesis Video signalling channels through boto3's `kinesisvideo` client and the aws CLI:
the control plane (create, describe, list, update, delete, tags, media storage), AWS's
errors, and durability across a restart."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_channel_lifecycle(server):
    kv = server.client("kinesisvideo")
    arn = kv.create_signaling_channel(
        ChannelName="front-door", SingleMasterConfiguration={"MessageTtlSeconds": 30},
        Tags=[{"Key": "site", "Value": "lobby"}])["ChannelARN"]
    assert arn.startswith("arn:aws:kinesisvideo:us-east-1:000000000000:channel/front-door/")
    info = kv.describe_signaling_channel(ChannelName="front-door")["ChannelInfo"]
    assert info["ChannelARN"] == arn
    assert (info["ChannelType"], info["ChannelStatus"]) == ("SINGLE_MASTER", "ACTIVE")
    assert info["SingleMasterConfiguration"]["MessageTtlSeconds"] == 30
    assert kv.describe_signaling_channel(ChannelARN=arn)["ChannelInfo"]["ChannelName"] == "front-door"

    kv.update_signaling_channel(ChannelARN=arn, CurrentVersion=info["Version"],
                                SingleMasterConfiguration={"MessageTtlSeconds": 120})
    after = kv.describe_signaling_channel(ChannelARN=arn)["ChannelInfo"]
    assert after["SingleMasterConfiguration"]["MessageTtlSeconds"] == 120
    assert after["Version"] != info["Version"]
    with pytest.raises(ClientError) as e:
        kv.update_signaling_channel(ChannelARN=arn, CurrentVersion=info["Version"],
                                    SingleMasterConfiguration={"MessageTtlSeconds": 60})
    assert error_code(e) == ("VersionMismatchException", 400)

    assert kv.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"site": "lobby"}
    kv.tag_resource(ResourceARN=arn, Tags=[{"Key": "floor", "Value": "1"}])
    kv.untag_resource(ResourceARN=arn, TagKeyList=["site"])
    assert kv.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"floor": "1"}

    with pytest.raises(ClientError) as e:
        kv.delete_signaling_channel(ChannelARN=arn, CurrentVersion=info["Version"])
    assert error_code(e) == ("VersionMismatchException", 400)
    kv.delete_signaling_channel(ChannelARN=arn)
    with pytest.raises(ClientError) as e:
        kv.describe_signaling_channel(ChannelARN=arn)
    assert error_code(e) == ("ResourceNotFoundException", 404)


def test_listing_pages_and_filters(server):
    kv = server.client("kinesisvideo")
    for i in range(7):
        kv.create_signaling_channel(ChannelName=f"cam-{i}")
    kv.create_signaling_channel(ChannelName="other")
    seen, token = [], None
    while True:
        page = kv.list_signaling_channels(MaxResults=3, **({"NextToken": token} if token else {}))
        seen += [c["ChannelName"] for c in page["ChannelInfoList"]]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == [f"cam-{i}" for i in range(7)] + ["other"]
    only = kv.list_signaling_channels(ChannelNameCondition={"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": "cam-"})
    assert len(only["ChannelInfoList"]) == 7
    paginator = kv.get_paginator("list_signaling_channels")
    assert sum(len(p["ChannelInfoList"]) for p in paginator.paginate(PaginationConfig={"PageSize": 2})) == 8


def test_aws_errors_for_bad_input(server):
    # What boto3 would refuse before sending, sent anyway: the server must refuse it too.
    kv = server.client("kinesisvideo", parameter_validation=False)
    kv.create_signaling_channel(ChannelName="dup")
    cases = [
        (lambda: kv.create_signaling_channel(ChannelName="dup"), ("ResourceInUseException", 400)),
        (lambda: kv.create_signaling_channel(ChannelName="bad name!"), ("InvalidArgumentException", 400)),
        (lambda: kv.create_signaling_channel(ChannelName="ttl", SingleMasterConfiguration={"MessageTtlSeconds": 4}),
         ("InvalidArgumentException", 400)),
        (lambda: kv.create_signaling_channel(ChannelName="mesh", ChannelType="FULL_MESH"), ("InvalidArgumentException", 400)),
        (lambda: kv.create_signaling_channel(ChannelName="tags", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)]),
         ("TagsPerResourceExceededLimitException", 400)),
        (lambda: kv.describe_signaling_channel(ChannelARN="arn:aws:kinesisvideo:us-east-1:000000000000:channel/none/1"),
         ("ResourceNotFoundException", 404)),
        (lambda: kv.describe_signaling_channel(ChannelARN="arn:aws:kinesisvideo:us-east-1:000000000000:stream/x/1"),
         ("InvalidArgumentException", 400)),
        (lambda: kv.list_tags_for_resource(ResourceARN="arn:aws:sqs:us-east-1:000000000000:q"),
         ("InvalidArgumentException", 400)),
    ]
    for call, expected in cases:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == expected
    # Another region's channel of the same name is another channel.
    west = server.client("kinesisvideo", region_name="us-west-2")
    west.create_signaling_channel(ChannelName="dup")
    assert len(west.list_signaling_channels()["ChannelInfoList"]) == 1


def test_media_storage_maps_a_channel_to_a_stream(server):
    kv = server.client("kinesisvideo")
    channel = kv.create_signaling_channel(ChannelName="webcam")["ChannelARN"]
    other = kv.create_signaling_channel(ChannelName="webcam-2")["ChannelARN"]
    stream = kv.create_stream(StreamName="webcam-recording", DataRetentionInHours=24)["StreamARN"]
    live_only = kv.create_stream(StreamName="live-only", DataRetentionInHours=0)["StreamARN"]
    assert kv.describe_media_storage_configuration(ChannelARN=channel)["MediaStorageConfiguration"] == {"Status": "DISABLED"}
    kv.update_media_storage_configuration(ChannelARN=channel,
                                          MediaStorageConfiguration={"StreamARN": stream, "Status": "ENABLED"})
    got = kv.describe_media_storage_configuration(ChannelName="webcam")["MediaStorageConfiguration"]
    assert got == {"StreamARN": stream, "Status": "ENABLED"}
    for config, expected in [
        ({"StreamARN": stream, "Status": "ENABLED"}, ("ResourceInUseException", 400)),
        ({"StreamARN": live_only, "Status": "ENABLED"}, ("NoDataRetentionException", 400)),
        ({"StreamARN": stream.replace("webcam-recording", "gone"), "Status": "ENABLED"}, ("ResourceNotFoundException", 404)),
        ({"Status": "ENABLED"}, ("InvalidArgumentException", 400)),
    ]:
        with pytest.raises(ClientError) as e:
            kv.update_media_storage_configuration(ChannelARN=other, MediaStorageConfiguration=config)
        assert error_code(e) == expected
    kv.update_media_storage_configuration(ChannelARN=channel, MediaStorageConfiguration={"Status": "DISABLED"})
    assert kv.describe_media_storage_configuration(ChannelARN=channel)["MediaStorageConfiguration"]["Status"] == "DISABLED"


def test_channels_survive_a_restart_and_the_cli_sees_them(server):
    kv = server.client("kinesisvideo")
    arn = kv.create_signaling_channel(ChannelName="durable", SingleMasterConfiguration={"MessageTtlSeconds": 15})["ChannelARN"]
    server.kill9()
    server.start()
    aws = Path(sys.executable).parent / "aws"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="us-east-1")
    p = subprocess.run([str(aws), "--endpoint-url", server.url, "kinesisvideo", "describe-signaling-channel",
                        "--channel-arn", arn, "--output", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ChannelInfo"]["SingleMasterConfiguration"]["MessageTtlSeconds"] == 15
