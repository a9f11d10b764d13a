"""Kinesis channels through boto3 against the real binary: a data stream delivered to a
bucket (JSON lines, GZIP and ZSTD objects), described, listed, updated, tagged and
deleted, invisible to Firehose, and refused with Kinesis's errors where it cannot run."""
import gzip
import subprocess
import time
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import wait_for

ROLE = "arn:aws:iam::{account}:role/channel-writer"


def code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def objects(root):
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def setup(server, stream="events"):
    account = server.client("sts").get_caller_identity()["Account"]
    c = server.client("kinesis")
    c.create_stream(StreamName=stream, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    arn = c.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    return c, account, arn


def channel_args(name, stream_arn, account, bucket="frames", compression="GZIP", fmt="JSON", freshness=1, **extra):
    return dict(
        ChannelName=name,
        ServiceExecutionRoleARN=ROLE.format(account=account),
        StreamConfigurationList=[{"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": fmt}}],
        S3DestinationConfiguration={
            "DataFreshnessInSeconds": freshness,
            "StorageConfiguration": {
                "BucketARN": f"arn:aws:s3:::{bucket}", "ExpectedBucketOwner": account,
                "OutputKeyTemplate": "detections/{timestamp:yyyy}/", "CompressionType": compression,
            },
        },
        **extra,
    )


def test_a_channel_delivers_its_stream_to_a_bucket(server):
    c, account, arn = setup(server)
    out = c.create_channel(**channel_args("archive", arn, account), Tags={"team": "cv"})["ChannelDescription"]
    assert out["ChannelStatus"] == "CREATING"
    channel = out["ChannelARN"]
    assert channel == f"arn:aws:kinesis:us-east-1:{account}:channel/{out['ChannelId']}"
    d = c.describe_channel(ChannelARN=channel)["ChannelDescription"]
    assert d["ChannelStatus"] == "ACTIVE" and d["ChannelName"] == "archive"
    assert d["S3DestinationConfiguration"]["StorageConfiguration"]["CompressionType"] == "GZIP"
    assert d["StreamConfigurationList"][0]["RecordConfiguration"]["RecordFormatType"] == "JSON"
    assert d["LoggingConfiguration"]["CloudWatchLogs"]["Enabled"] is False
    assert c.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]["ChannelCount"] == 1
    assert c.describe_limits()["ChannelCount"] == 1

    c.put_records(StreamARN=arn, Records=[{"Data": f'{{"frame": {i}}}'.encode(), "PartitionKey": f"k{i}"}
                                          for i in range(40)])
    bucket = server.data_dir / "buckets" / "frames"

    def delivered():
        lines = [l for p in objects(bucket) for l in gzip.decompress(p.read_bytes()).decode().splitlines()]
        return len(lines) >= 40 and lines
    lines = wait_for(delivered, timeout=30, what="40 records in the bucket")
    assert sorted(lines) == sorted(f'{{"frame": {i}}}' for i in range(40)), "one JSON record per line"
    keys = [str(p.relative_to(bucket)) for p in objects(bucket)]
    assert all(k.startswith(f"detections/{time.gmtime().tm_year}/") and k.endswith(".gz") for k in keys), keys

    # Firehose does not see the channel's delivery.
    assert server.client("firehose").list_delivery_streams()["DeliveryStreamNames"] == []
    # Update, tags, list, delete.
    u = c.update_channel(ChannelARN=channel, S3DestinationConfiguration={"DataFreshnessInSeconds": 60})
    assert u["ChannelDescription"]["ChannelStatus"] == "UPDATING"
    assert c.describe_channel(ChannelARN=channel)["ChannelDescription"]["S3DestinationConfiguration"][
        "DataFreshnessInSeconds"] == 60
    assert c.list_tags_for_resource(ResourceARN=channel)["Tags"] == [{"Key": "team", "Value": "cv"}]
    summaries = c.list_channels(StreamFilter=[{"StreamARN": arn}])["ChannelSummaries"]
    assert [s["ChannelName"] for s in summaries] == ["archive"] and summaries[0]["ChannelDestinationType"] == "S3"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_stream(StreamARN=arn)
    assert code(e) == "ResourceInUseException"
    c.delete_channel(ChannelARN=channel)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_channel(ChannelARN=channel)
    assert code(e) == "ResourceNotFoundException"
    assert objects(bucket), "deleting the channel leaves what it delivered"
    c.delete_stream(StreamARN=arn)


def test_zstd_and_byte_array_channels_and_a_restart(data_dir):
    from conftest import Server
    s = Server(data_dir).start()
    try:
        c, account, arn = setup(s, "raw")
        ch = c.create_channel(**channel_args("raw", arn, account, bucket="raw", compression="ZSTD", fmt="BYTE_ARRAY"))
        channel = ch["ChannelDescription"]["ChannelARN"]
        c.put_record(StreamARN=arn, Data=b"\x00\x01binary", PartitionKey="a")
        bucket = data_dir / "buckets" / "raw"

        def content():
            got = b"".join(subprocess.run(["zstd", "-dc", str(p)], capture_output=True, check=True).stdout
                           for p in objects(bucket))
            return got if got else None
        assert wait_for(content, timeout=30, what="a ZSTD object") == b"\x00\x01binary", "bytes as put, no delimiter"
        port = s.port
        s.stop()
        s.start(port)
        c = s.client("kinesis")
        assert c.describe_channel(ChannelARN=channel)["ChannelDescription"]["ChannelName"] == "raw"
        c.put_record(StreamARN=arn, Data=b"after", PartitionKey="a")
        wait_for(lambda: (content() or b"").endswith(b"after"), timeout=30, what="delivery after a restart")
    finally:
        s.stop()


def test_channels_that_cannot_run_are_refused_clearly(server):
    c, account, arn = setup(server)
    c.create_stream(StreamName="prov", ShardCount=1)
    prov = c.describe_stream_summary(StreamName="prov")["StreamDescriptionSummary"]["StreamARN"]
    tables = channel_args("t", arn, account)
    del tables["S3DestinationConfiguration"]
    tables["S3TablesDestinationConfiguration"] = {
        "DataFreshnessInSeconds": 60,
        "DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::dlq", "ExpectedBucketOwner": account},
        "S3TablesConfigurationList": [{"TableBucketARN": f"arn:aws:s3tables:us-east-1:{account}:bucket/tb",
                                       "Namespace": "ns", "TableName": "t", "CompressionType": "ZSTD"}],
    }
    cases = [
        (tables, "InvalidArgumentException"),
        (channel_args("p", prov, account), "InvalidArgumentException"),
        (channel_args("g", arn, account, fmt="GSR_JSON"), "InvalidArgumentException"),
        (channel_args("o", arn, "210987654321"), "AccessDeniedException"),
        (channel_args("bad name", arn, account), "ValidationException"),
        (channel_args("z", arn, account, compression="LZ4"), "ValidationException"),
        (dict(channel_args("r", arn, account), ServiceExecutionRoleARN="arn:aws:iam::123:user/x"), "ValidationException"),
    ]
    for args, expected in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.create_channel(**args)
        assert code(e) == expected, (args["ChannelName"], e.value.response["Error"])
    c.create_channel(**channel_args("once", arn, account))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_channel(**channel_args("once", arn, account))
    assert code(e) == "ResourceInUseException"
