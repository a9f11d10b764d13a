"""The README's computer-vision quick start, end to end: an ffmpeg test-pattern camera
pushes video, examples/cv_consumer.py follows its fragment events, fetches frames with
GetImages, detects motion and writes detections into a data stream, which a delivery
stream archives as Parquet (read back with pyarrow). And the same consumer reading the
frames image generation writes, through S3's API, as a program on another machine."""

import io
import subprocess
import sys

import pyarrow.parquet as pq

from conftest import FIXTURES, ROOT, Server, wait_for

ROLE = "arn:aws:iam::123456789012:role/firehose"


def test_example_consumer_writes_detections_that_a_delivery_stream_archives(data_dir):
    config = data_dir / "kinescope.toml"
    config.write_text(
        "[tables.vision.detections]\ncolumns = ["
        '{ name = "streamName", type = "string" }, { name = "frameTimestampMs", type = "bigint" }, '
        '{ name = "label", type = "string" }, { name = "score", type = "double" }, '
        '{ name = "x", type = "double" }, { name = "y", type = "double" }, '
        '{ name = "w", type = "double" }, { name = "h", type = "double" }]\n'
    )
    server = Server(data_dir, extra_args=["--config", str(config)]).start()
    consumer = None
    try:
        kv = server.client("kinesisvideo")
        kinesis = server.client("kinesis")
        kv.create_stream(StreamName="door", DataRetentionInHours=24)
        consumer = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "cv_consumer.py"), "--endpoint", server.url, "--stream", "door",
             "--queue", "door-events", "--detections", "door-detections", "--set-up", "--max-fragments", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"AWS_ACCESS_KEY_ID": "anonymous", "AWS_SECRET_ACCESS_KEY": "anonymous", "PATH": "/usr/bin:/bin"},
        )
        wait_for(lambda: "NotificationConfiguration" in kv.describe_notification_configuration(StreamName="door"),
                 what="the consumer's set-up")
        arn = kinesis.describe_stream_summary(StreamName="door-detections")["StreamDescriptionSummary"]["StreamARN"]
        server.client("firehose").create_delivery_stream(
            DeliveryStreamName="detections-archive", DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": ROLE},
            ExtendedS3DestinationConfiguration={
                "BucketARN": "arn:aws:s3:::archive", "RoleARN": ROLE, "Prefix": "detections/",
                "BufferingHints": {"IntervalInSeconds": 1, "SizeInMBs": 64},
                "DataFormatConversionConfiguration": {
                    "Enabled": True,
                    "SchemaConfiguration": {"DatabaseName": "vision", "TableName": "detections", "RoleARN": ROLE},
                    "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                    "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
                },
            },
        )
        server.put("door", FIXTURES / "av.mp4")  # the ffmpeg test pattern: bars, a moving gradient, a clock
        out, err = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, err
        lines = [l for l in out.splitlines() if l.startswith("fragment ")]
        assert len(lines) == 4 and all("5 frames" in l for l in lines), out

        bucket = data_dir / "buckets" / "archive"
        files = wait_for(lambda: [p for p in bucket.rglob("*") if p.is_file()], what="archived detections")
        rows = [r for f in files for r in pq.read_table(io.BytesIO(f.read_bytes())).to_pylist()]
        assert rows and {r["label"] for r in rows} == {"motion"} and {r["streamName"] for r in rows} == {"door"}
        frags = server.client("kinesis-video-archived-media").list_fragments(StreamName="door")["Fragments"]
        first = min(f["ProducerTimestamp"] for f in frags).timestamp() * 1000
        assert all(first <= r["frameTimestampMs"] < first + 4000 for r in rows)
        assert all(0 <= r["x"] < 1 and 0 < r["w"] <= 1 and 0 < r["score"] <= 1 for r in rows)
    finally:
        if consumer and consumer.poll() is None:
            consumer.kill()
        server.stop()


def test_example_consumer_reads_frames_through_s3(server):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="porch", DataRetentionInHours=24)
    consumer = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "cv_consumer.py"), "--endpoint", server.url, "--stream", "porch",
         "--queue", "porch-events", "--detections", "porch-detections", "--set-up", "--max-fragments", "4",
         "--frames-from", "s3", "--bucket", "porch-frames", "--interval-ms", "250"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"AWS_ACCESS_KEY_ID": "anonymous", "AWS_SECRET_ACCESS_KEY": "anonymous", "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_for(lambda: kv.describe_image_generation_configuration(StreamName="porch").get(
            "ImageGenerationConfiguration", {}).get("Status") == "ENABLED", what="the consumer's set-up")
        server.put("porch", FIXTURES / "av.mp4")
        out, err = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, err
        lines = [l for l in out.splitlines() if l.startswith("fragment ")]
        assert len(lines) == 4 and all("4 frames" in l for l in lines), out
        kinesis = server.client("kinesis")
        shard = kinesis.list_shards(StreamName="porch-detections")["Shards"][0]["ShardId"]
        it = kinesis.get_shard_iterator(StreamName="porch-detections", ShardId=shard,
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=it)["Records"]
        assert records and all(b'"label": "motion"' in r["Data"] for r in records)
    finally:
        if consumer.poll() is None:
            consumer.kill()
