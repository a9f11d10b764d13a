"""Kinesis's newest operations through boto3 and the aws CLI against the real binary:
stream queues end to end (put, receive, acknowledge, visibility expiry, redelivery,
dead letters, restore, kill -9), account settings, warm throughput, the record
distribution strategy and records without a partition key."""
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import Server


def code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def on_demand(c, name, **kw):
    c.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"}, **kw)
    return c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def make_queue(c, name, stream_arn, start="TRIM_HORIZON", **attributes):
    out = c.create_queue(
        QueueName=name,
        StreamConfigurationList=[{"StreamARN": stream_arn, "StartingPosition": {"Type": start}}],
        QueueAttributes=attributes,
    )["QueueDescription"]
    return out


def test_a_queue_delivers_hides_redelivers_and_forgets_acknowledged_records(server):
    c = server.client("kinesis")
    arn = on_demand(c, "orders")
    for i in range(6):
        c.put_record(StreamARN=arn, Data=f"order-{i}".encode(), PartitionKey=f"k{i}")
    q = make_queue(c, "workers", arn, VisibilityTimeoutSeconds=3)
    assert q["QueueStatus"] == "CREATING"
    qarn = q["QueueARN"]
    assert qarn.startswith("arn:aws:kinesis:us-east-1:") and ":queue/" in qarn
    d = c.describe_queue(QueueARN=qarn)["QueueDescription"]
    assert d["QueueStatus"] == "ACTIVE" and d["QueueName"] == "workers"
    assert d["QueueAttributes"] == {
        "VisibilityTimeoutSeconds": 3,
        "DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 6},
    }
    assert d["StreamConfigurationList"][0]["StartingPosition"]["Type"] == "TRIM_HORIZON"
    assert c.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]["QueueCount"] == 1

    got = c.receive_queue_records(QueueARN=qarn, Limit=10, WaitTimeSeconds=1)["QueueRecords"]
    assert sorted(r["Data"] for r in got) == [f"order-{i}".encode() for i in range(6)]
    assert all(r["ReceiveCount"] == 1 for r in got)
    assert all(re.fullmatch(r"[a-z0-9]{1,64}", r["RecordId"]) for r in got), "the model's RecordId pattern"
    assert c.receive_queue_records(QueueARN=qarn, WaitTimeSeconds=1)["QueueRecords"] == [], "in flight"

    # Four acknowledged (one batch has a forged handle: refused alone, with a 200).
    acked = c.acknowledge_queue_records(
        QueueARN=qarn,
        Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in got[:4]] + [{"ReceiptHandle": "forged"}],
    )
    assert len(acked["Successful"]) == 4
    assert [f["ErrorCode"] for f in acked["Failed"]] == ["InvalidArgumentException"]
    assert acked["Failed"][0]["ReceiptHandle"] == "forged"

    # The other two come back once their 3 s pass, with new handles and counts of 2.
    time.sleep(3.2)
    again = c.receive_queue_records(QueueARN=qarn, WaitTimeSeconds=5)["QueueRecords"]
    assert sorted(r["RecordId"] for r in again) == sorted(r["RecordId"] for r in got[4:])
    assert all(r["ReceiveCount"] == 2 for r in again)
    stale = c.acknowledge_queue_records(QueueARN=qarn, Entries=[{"ReceiptHandle": got[4]["ReceiptHandle"]}])
    assert stale["Failed"][0]["ErrorCode"] == "InvalidArgumentException", "an earlier delivery's handle"
    # A longer visibility for one, zero (visible now) for the other.
    vis = c.update_queue_records_visibility(
        QueueARN=qarn,
        Entries=[
            {"ReceiptHandle": again[0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 600},
            {"ReceiptHandle": again[1]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0},
        ],
    )
    assert len(vis["Successful"]) == 2, vis
    now = c.receive_queue_records(QueueARN=qarn, WaitTimeSeconds=1)["QueueRecords"]
    assert [r["RecordId"] for r in now] == [again[1]["RecordId"]]

    # A long poll returns as soon as a record arrives.
    started = time.monotonic()
    threading.Timer(0.5, lambda: c.put_record(StreamARN=arn, Data=b"late", PartitionKey="z")).start()
    late = c.receive_queue_records(QueueARN=qarn, WaitTimeSeconds=20)["QueueRecords"]
    assert [r["Data"] for r in late] == [b"late"]
    assert time.monotonic() - started < 15

    # The stream cannot go while a queue reads it; the queue can.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_stream(StreamARN=arn, EnforceConsumerDeletion=True)
    assert code(e) == "ResourceInUseException"
    c.delete_queue(QueueARN=qarn)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_queue(QueueARN=qarn)
    assert code(e) == "ResourceNotFoundException"
    c.delete_stream(StreamARN=arn)


def test_dead_letters_are_received_apart_and_restored(server):
    c = server.client("kinesis")
    arn = on_demand(c, "poison")
    c.put_record(StreamARN=arn, Data=b"bad", PartitionKey="p")
    q = make_queue(
        c, "dlq", arn, VisibilityTimeoutSeconds=0,
        DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": 2},
    )["QueueARN"]
    counts = [c.receive_queue_records(QueueARN=q, WaitTimeSeconds=1)["QueueRecords"][0]["ReceiveCount"] for _ in range(2)]
    assert counts == [1, 2]
    assert c.receive_queue_records(QueueARN=q, WaitTimeSeconds=1)["QueueRecords"] == []
    dead = c.receive_dead_letter_queue_records(QueueARN=q, WaitTimeSeconds=1, VisibilityTimeoutSeconds=60)
    dead = dead["QueueRecords"]
    assert [r["Data"] for r in dead] == [b"bad"]
    restored = c.restore_dead_letter_queue_records(QueueARN=q, Entries=[{"ReceiptHandle": dead[0]["ReceiptHandle"]}])
    assert len(restored["Successful"]) == 1
    back = c.receive_queue_records(QueueARN=q, WaitTimeSeconds=1)["QueueRecords"]
    assert back[0]["ReceiveCount"] == 1 and back[0]["Data"] == b"bad"
    # NONE: endless redelivery.
    c.update_queue(QueueARN=q, QueueAttributes={"DeadLetterConfiguration": {"TargetType": "NONE"}})
    for _ in range(3):
        assert c.receive_queue_records(QueueARN=q, WaitTimeSeconds=1)["QueueRecords"]
    d = c.describe_queue(QueueARN=q)["QueueDescription"]
    assert d["QueueAttributes"]["DeadLetterConfiguration"] == {"TargetType": "NONE"}


def test_queue_errors_and_limits_are_kinesis_errors(server):
    c = server.client("kinesis")
    arn = on_demand(c, "errs")
    c.create_stream(StreamName="prov", ShardCount=1)
    prov = c.describe_stream_summary(StreamName="prov")["StreamDescriptionSummary"]["StreamARN"]
    cases = [
        (lambda: make_queue(c, "p", prov), "InvalidArgumentException"),
        (lambda: make_queue(c, "bad name", arn), "ValidationException"),
        (lambda: make_queue(c, "v", arn, VisibilityTimeoutSeconds=50000), "ValidationException"),
        (lambda: make_queue(c, "d", arn, DeadLetterConfiguration={"TargetType": "BUILT_IN"}), "InvalidArgumentException"),
        (lambda: c.create_queue(QueueName="two", StreamConfigurationList=[{"StreamARN": arn}, {"StreamARN": arn}]),
         "InvalidArgumentException"),
        (lambda: c.describe_queue(QueueARN="arn:aws:kinesis:us-east-1:000000000000:queue/nope"), "ResourceNotFoundException"),
        (lambda: c.describe_queue(QueueARN="not-an-arn"), "ValidationException"),
    ]
    for call, expected in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert code(e) == expected, (expected, e.value.response)
    q = make_queue(c, "ok", arn)["QueueARN"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        make_queue(c, "ok", arn)
    assert code(e) == "ResourceInUseException"
    for bad in ({"Limit": 11}, {"WaitTimeSeconds": 21}, {"VisibilityTimeoutSeconds": 43201}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.receive_queue_records(QueueARN=q, **bad)
        assert code(e) == "ValidationException", bad
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.acknowledge_queue_records(QueueARN=q, Entries=[{"ReceiptHandle": f"h{i}"} for i in range(11)])
    assert code(e) == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert code(e) == "ResourceInUseException"
    # Another region (another scope) sees nothing.
    other = server.client("kinesis", region_name="eu-west-1")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.describe_queue(QueueARN=q)
    assert code(e) == "ResourceNotFoundException"


def test_list_queues_pages_and_filters_and_queues_take_tags(server):
    c = server.client("kinesis")
    a = on_demand(c, "list-a")
    b = on_demand(c, "list-b")
    for i in range(5):
        make_queue(c, f"qa{i}", a)
    qb = make_queue(c, "qb", b)["QueueARN"]
    pages = list(c.get_paginator("list_queues").paginate(PaginationConfig={"PageSize": 2}))
    names = [s["QueueName"] for p in pages for s in p["QueueSummaries"]]
    assert names == ["qa0", "qa1", "qa2", "qa3", "qa4", "qb"] and len(pages) == 3
    only_b = c.list_queues(StreamFilter=[{"StreamARN": b}])["QueueSummaries"]
    assert [s["QueueName"] for s in only_b] == ["qb"] and only_b[0]["Streams"][0]["StreamARN"] == b
    c.tag_resource(ResourceARN=qb, Tags={"team": "cv"})
    assert c.list_tags_for_resource(ResourceARN=qb)["Tags"] == [{"Key": "team", "Value": "cv"}]
    c.untag_resource(ResourceARN=qb, TagKeys=["team"])
    assert c.list_tags_for_resource(ResourceARN=qb)["Tags"] == []


def test_queue_state_survives_kill_9(data_dir):
    s = Server(data_dir)
    s.start()
    try:
        c = s.client("kinesis")
        arn = on_demand(c, "durable")
        for i in range(4):
            c.put_record(StreamARN=arn, Data=f"d{i}".encode(), PartitionKey="k")
        q = make_queue(c, "q", arn, VisibilityTimeoutSeconds=3600)["QueueARN"]
        got = c.receive_queue_records(QueueARN=q, Limit=2, WaitTimeSeconds=1)["QueueRecords"]
        acked = c.acknowledge_queue_records(QueueARN=q, Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in got])
        assert len(acked["Successful"]) == 2
        port = s.port
        s.kill9()
        s.start(port)
        c = s.client("kinesis")
        rest = c.receive_queue_records(QueueARN=q, WaitTimeSeconds=1)["QueueRecords"]
        assert sorted(r["Data"] for r in rest) == [b"d2", b"d3"], "acknowledged records stay acknowledged"
    finally:
        s.stop()


def test_account_settings_warm_throughput_and_keyless_records(server):
    c = server.client("kinesis")
    assert c.describe_account_settings()["MinimumThroughputBillingCommitment"]["Status"] == "DISABLED"
    arn = on_demand(c, "warm")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.update_stream_warm_throughput(StreamARN=arn, WarmThroughputMiBps=100)
    assert code(e) == "InvalidArgumentException", "warm throughput needs the commitment"
    on = c.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})
    assert on["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED"
    assert "EarliestAllowedEndAt" in on["MinimumThroughputBillingCommitment"]
    w = c.update_stream_warm_throughput(StreamARN=arn, WarmThroughputMiBps=100)
    assert w["WarmThroughput"] == {"TargetMiBps": 100, "CurrentMiBps": 100} and w["StreamName"] == "warm"
    summary = c.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
    assert summary["WarmThroughput"]["TargetMiBps"] == 100
    assert summary["RecordDistributionStrategy"] == "USER_PARTITION_KEY"
    off = c.update_account_settings(MinimumThroughputBillingCommitment={"Status": "DISABLED"})
    assert off["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END"

    # Without a key: refused while the stream places by key, placed evenly on AUTO.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_record(StreamARN=arn, Data=b"x")
    assert code(e) == "InvalidArgumentException"
    c.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="AUTO")
    for i in range(40):
        c.put_record(StreamARN=arn, Data=f"{i}".encode())
    r = c.put_records(StreamARN=arn, Records=[{"Data": b"batch"}])
    assert r["FailedRecordCount"] == 0
    per_shard = {}
    for shard in c.list_shards(StreamARN=arn)["Shards"]:
        it = c.get_shard_iterator(StreamARN=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        recs = c.get_records(ShardIterator=it["ShardIterator"])["Records"]
        per_shard[shard["ShardId"]] = len(recs)
        assert all("PartitionKey" not in rec for rec in recs), "no key given, none returned"
    assert sum(per_shard.values()) == 41 and min(per_shard.values()) >= 5, per_shard
    c.create_stream(StreamName="prov-auto", ShardCount=1)
    prov = c.describe_stream_summary(StreamName="prov-auto")["StreamDescriptionSummary"]["StreamARN"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.update_stream_record_distribution_strategy(StreamARN=prov, RecordDistributionStrategy="AUTO")
    assert code(e) == "InvalidArgumentException"


def test_the_aws_cli_reads_and_sets_account_settings_and_warm_throughput(server):
    """The aws CLI (v1) ships its own botocore model, older than the queue operations
    (1.44.8): it drives account settings and warm throughput, not queues yet."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret", AWS_DEFAULT_REGION="us-east-1")

    def aws(*args):
        out = subprocess.run(
            [str(Path(sys.executable).parent / "aws"), "--endpoint-url", server.url, "kinesis", *args],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    c = server.client("kinesis")
    on_demand(c, "cli")
    assert aws("describe-account-settings")["MinimumThroughputBillingCommitment"]["Status"] == "DISABLED"
    on = aws("update-account-settings", "--minimum-throughput-billing-commitment", "Status=ENABLED")
    assert on["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED"
    w = aws("update-stream-warm-throughput", "--stream-name", "cli", "--warm-throughput-mi-bps", "50")
    assert w["WarmThroughput"] == {"TargetMiBps": 50, "CurrentMiBps": 50}
