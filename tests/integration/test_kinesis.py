"""Kinesis Data Streams through boto3 and the aws CLI against the real binary."""
import base64
import hashlib
import json
import os
import subprocess
import threading
import urllib.error
import time

import botocore.exceptions
import pytest

from conftest import Server


def kinesis(s, **config):
    return s.client("kinesis", **config)


def code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def wait_active(c, name):
    for _ in range(100):
        if c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never became ACTIVE")


def drain(c, name, shard_id, kind="TRIM_HORIZON", **kw):
    """Every record of a shard from a starting position, following NextShardIterator
    until the shard's end or an empty read."""
    it = c.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType=kind, **kw)["ShardIterator"]
    out = []
    while it:
        r = c.get_records(ShardIterator=it, Limit=1000)
        out += r["Records"]
        it = r.get("NextShardIterator")
        if not r["Records"]:
            break
    return out


def all_records(c, name):
    """Every record of the stream, parents before children, by shard lineage."""
    shards = c.list_shards(StreamName=name)["Shards"]
    recs = []
    for sh in shards:
        recs += drain(c, name, sh["ShardId"])
    return recs


def test_records_route_by_md5_ranges_and_keep_order_per_shard(server):
    c = kinesis(server)
    c.create_stream(StreamName="route", ShardCount=4)
    wait_active(c, "route")
    shards = c.list_shards(StreamName="route")["Shards"]
    assert len(shards) == 4
    ranges = {s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
              for s in shards}
    assert ranges["shardId-000000000000"][0] == 0
    assert ranges["shardId-000000000003"][1] == 2**128 - 1

    put = {}
    for i in range(40):
        pk = f"key-{i}"
        r = c.put_record(StreamName="route", Data=f"v{i}".encode(), PartitionKey=pk)
        h = int(hashlib.md5(pk.encode()).hexdigest(), 16)
        lo, hi = ranges[r["ShardId"]]
        assert lo <= h <= hi, (pk, r["ShardId"])
        put[r["SequenceNumber"]] = (r["ShardId"], pk)
    # ExplicitHashKey wins over the partition key.
    r = c.put_record(StreamName="route", Data=b"x", PartitionKey="any", ExplicitHashKey=str(2**128 - 1))
    assert r["ShardId"] == "shardId-000000000003"
    assert r["EncryptionType"] == "NONE"

    batch = c.put_records(StreamName="route", Records=[
        {"Data": f"b{i}".encode(), "PartitionKey": f"key-{i % 7}"} for i in range(500)])
    assert batch["FailedRecordCount"] == 0 and len(batch["Records"]) == 500

    for sh in shards:
        recs = drain(c, "route", sh["ShardId"])
        seqs = [int(x["SequenceNumber"]) for x in recs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        for x in recs:
            h = int(hashlib.md5(x["PartitionKey"].encode()).hexdigest(), 16)
            if x["Data"] != b"x":
                lo, hi = ranges[sh["ShardId"]]
                assert lo <= h <= hi
    total = sum(len(drain(c, "route", sh["ShardId"])) for sh in shards)
    assert total == 40 + 1 + 500


def test_concurrent_producers_keep_per_key_order(server):
    c = kinesis(server)
    c.create_stream(StreamName="conc", ShardCount=2)
    errors = []

    def producer(w):
        cl = kinesis(server)
        try:
            for i in range(0, 200, 20):
                cl.put_records(StreamName="conc", Records=[
                    {"Data": json.dumps({"w": w, "i": i + j}).encode(), "PartitionKey": f"w{w}"} for j in range(20)])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=producer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    recs = all_records(c, "conc")
    assert len(recs) == 6 * 200
    by_worker = {}
    for r in recs:
        d = json.loads(r["Data"])
        by_worker.setdefault(d["w"], []).append(d["i"])
    for w, seen in by_worker.items():
        assert seen == list(range(200)), f"worker {w} out of order"


def test_every_iterator_type(server):
    c = kinesis(server)
    c.create_stream(StreamName="its", ShardCount=1)
    sid = "shardId-000000000000"
    first = [c.put_record(StreamName="its", Data=f"a{i}".encode(), PartitionKey="k") for i in range(5)]
    time.sleep(0.05)
    mark = time.time()
    time.sleep(0.05)
    second = [c.put_record(StreamName="its", Data=f"b{i}".encode(), PartitionKey="k") for i in range(5)]

    assert [r["Data"] for r in drain(c, "its", sid)] == [f"a{i}".encode() for i in range(5)] + [f"b{i}".encode() for i in range(5)]
    at = drain(c, "its", sid, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=first[3]["SequenceNumber"])
    assert at[0]["Data"] == b"a3" and len(at) == 7
    after = drain(c, "its", sid, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=first[3]["SequenceNumber"])
    assert after[0]["Data"] == b"a4"
    ts = drain(c, "its", sid, "AT_TIMESTAMP", Timestamp=mark)
    assert [r["Data"] for r in ts] == [f"b{i}".encode() for i in range(5)]
    assert ts[0]["SequenceNumber"] == second[0]["SequenceNumber"]

    latest = c.get_shard_iterator(StreamName="its", ShardId=sid, ShardIteratorType="LATEST")["ShardIterator"]
    r = c.get_records(ShardIterator=latest)
    assert r["Records"] == [] and r["MillisBehindLatest"] == 0
    c.put_record(StreamName="its", Data=b"late", PartitionKey="k")
    r = c.get_records(ShardIterator=r["NextShardIterator"])
    assert [x["Data"] for x in r["Records"]] == [b"late"]
    assert r["Records"][0]["ApproximateArrivalTimestamp"].timestamp() == pytest.approx(time.time(), abs=5)

    # Limit, and MillisBehindLatest when not caught up.
    it = c.get_shard_iterator(StreamName="its", ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    r = c.get_records(ShardIterator=it, Limit=2)
    assert len(r["Records"]) == 2 and r["MillisBehindLatest"] > 0

    # Bad input: AWS's errors.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_records(ShardIterator=it[:-3] + "AAA")
    assert code(e) == "InvalidArgumentException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_shard_iterator(StreamName="its", ShardId=sid, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="12")
    assert code(e) == "InvalidArgumentException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_shard_iterator(StreamName="its", ShardId="shardId-000000000009", ShardIteratorType="LATEST")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_records(ShardIterator=it, Limit=10001)
    assert code(e) in ("InvalidArgumentException", "ValidationException")


def test_bad_records_are_refused_alone(server):
    c = kinesis(server)
    c.create_stream(StreamName="bad", ShardCount=1)
    good = c.put_record(StreamName="bad", Data=b"keep", PartitionKey="k")
    for kwargs, expect in [
        (dict(Data=b"x" * (1024 * 1024), PartitionKey="k"), "InvalidArgumentException"),
        (dict(Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128)), "InvalidArgumentException"),
        (dict(Data=b"x", PartitionKey="k", ExplicitHashKey="-1"), "InvalidArgumentException"),
        (dict(Data=b"x", PartitionKey="k" * 257), None),  # botocore may refuse it first
    ]:
        with pytest.raises((botocore.exceptions.ClientError, botocore.exceptions.ParamValidationError)) as e:
            c.put_record(StreamName="bad", **kwargs)
        if expect and isinstance(e.value, botocore.exceptions.ClientError):
            assert code(e) == expect
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_record(StreamName="nope", Data=b"x", PartitionKey="k")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_record(StreamName="bad", Data=b"x", PartitionKey="k", DryRun=True)
    assert code(e) == "DryRunOperationException"
    # A bigger record is accepted once the stream allows it.
    c.update_max_record_size(StreamARN=c.describe_stream_summary(StreamName="bad")["StreamDescriptionSummary"]["StreamARN"],
                             MaxRecordSizeInKiB=2048)
    c.put_record(StreamName="bad", Data=b"y" * (1024 * 1024 + 10), PartitionKey="k")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_stream(StreamName="bad", ShardCount=1)
    assert code(e) == "ResourceInUseException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_stream(StreamName="bad name!", ShardCount=1)
    assert code(e) in ("InvalidArgumentException", "ValidationException")
    recs = drain(c, "bad", "shardId-000000000000")
    assert recs[0]["Data"] == b"keep" and recs[0]["SequenceNumber"] == good["SequenceNumber"]
    assert len(recs) == 2


def test_resharding_while_producers_write_loses_and_duplicates_nothing(server):
    c = kinesis(server)
    c.create_stream(StreamName="rs", ShardCount=2)
    stop = threading.Event()
    acked, errors = [], []

    def producer(w):
        cl = kinesis(server)
        i = 0
        while not stop.is_set():
            body = f"{w}-{i}"
            try:
                cl.put_record(StreamName="rs", Data=body.encode(), PartitionKey=f"pk{i % 17}")
                acked.append(body)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return
            i += 1

    threads = [threading.Thread(target=producer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    c.split_shard(StreamName="rs", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    wait_active(c, "rs")
    time.sleep(0.3)
    c.merge_shards(StreamName="rs", ShardToMerge="shardId-000000000002", AdjacentShardToMerge="shardId-000000000003")
    wait_active(c, "rs")
    time.sleep(0.3)
    out = c.update_shard_count(StreamName="rs", TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (2, 3)
    wait_active(c, "rs")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors

    shards = c.list_shards(StreamName="rs")["Shards"]
    open_shards = sorted((s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]),
                         key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    assert len(open_shards) == 3
    # Parents read to their end give null NextShardIterator and ChildShards.
    it = c.get_shard_iterator(StreamName="rs", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while True:
        r = c.get_records(ShardIterator=it)
        if "NextShardIterator" not in r:
            assert {ch["ShardId"] for ch in r["ChildShards"]} == {"shardId-000000000002", "shardId-000000000003"}
            break
        it = r["NextShardIterator"]
    got = [r["Data"].decode() for r in all_records(c, "rs")]
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(got) == set(acked), f"missing {len(set(acked) - set(got))}"
    # Per producer and key, parents' records come before children's: order kept.
    seq_of = {}
    for sh in shards:
        for r in drain(c, "rs", sh["ShardId"]):
            seq_of[r["Data"].decode()] = int(r["SequenceNumber"])
    for w in range(3):
        mine = sorted((int(b.split("-")[1]), seq_of[b]) for b in acked if b.startswith(f"{w}-"))
        assert [s for _, s in mine] == sorted(s for _, s in mine)

    # Bad resharding input.
    for call, kw, expect in [
        (c.split_shard, dict(ShardToSplit="shardId-000000000000", NewStartingHashKey="5"), "InvalidArgumentException"),
        (c.split_shard, dict(ShardToSplit=open_shards[0]["ShardId"], NewStartingHashKey=open_shards[0]["HashKeyRange"]["StartingHashKey"]), "InvalidArgumentException"),
        (c.merge_shards, dict(ShardToMerge=open_shards[0]["ShardId"], AdjacentShardToMerge=open_shards[2]["ShardId"]), "InvalidArgumentException"),
        (c.split_shard, dict(ShardToSplit="shardId-000000000099", NewStartingHashKey="5"), "ResourceNotFoundException"),
        (c.update_shard_count, dict(TargetShardCount=7, ScalingType="UNIFORM_SCALING"), "InvalidArgumentException"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(StreamName="rs", **kw)
        assert code(e) == expect, (call, kw)


def test_updating_streams_refuse_resharding(data_dir):
    s = Server(data_dir, extra_args=["--kinesis-update-delay-ms", "1500"]).start()
    try:
        c = kinesis(s)
        c.create_stream(StreamName="slow", ShardCount=2)
        assert c.describe_stream(StreamName="slow")["StreamDescription"]["StreamStatus"] == "CREATING"
        wait_active(c, "slow")
        c.split_shard(StreamName="slow", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**125))
        assert c.describe_stream_summary(StreamName="slow")["StreamDescriptionSummary"]["StreamStatus"] == "UPDATING"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.merge_shards(StreamName="slow", ShardToMerge="shardId-000000000002", AdjacentShardToMerge="shardId-000000000003")
        assert code(e) == "ResourceInUseException"
        c.put_record(StreamName="slow", Data=b"still writable", PartitionKey="k")
        wait_active(c, "slow")
        c.merge_shards(StreamName="slow", ShardToMerge="shardId-000000000002", AdjacentShardToMerge="shardId-000000000003")
    finally:
        s.stop()


def test_control_plane_listing_tags_retention_and_consumers(server):
    c = kinesis(server)
    for n in ["ls-a", "ls-b", "ls-c"]:
        c.create_stream(StreamName=n, ShardCount=1, Tags={"team": "cv"} if n == "ls-a" else {})
    c.create_stream(StreamName="ls-od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    page = c.list_streams(Limit=2)
    assert page["StreamNames"] == ["ls-a", "ls-b"] and page["HasMoreStreams"]
    rest = c.list_streams(NextToken=page["NextToken"])
    assert rest["StreamNames"] == ["ls-c", "ls-od"] and not rest["HasMoreStreams"]
    assert rest["StreamSummaries"][1]["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert c.list_streams(ExclusiveStartStreamName="ls-b")["StreamNames"] == ["ls-c", "ls-od"]
    summ = c.describe_stream_summary(StreamName="ls-od")["StreamDescriptionSummary"]
    assert summ["OpenShardCount"] == 4 and summ["RetentionPeriodHours"] == 24
    arn = summ["StreamARN"]
    assert arn == "arn:aws:kinesis:us-east-1:000000000000:stream/ls-od"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.split_shard(StreamName="ls-od", ShardToSplit="shardId-000000000000", NewStartingHashKey="5")
    assert code(e) == "ValidationException"

    # ListShards pagination by token, and filters.
    c.create_stream(StreamName="many", ShardCount=5)
    p1 = c.list_shards(StreamName="many", MaxResults=2)
    assert [s["ShardId"] for s in p1["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    p2 = c.list_shards(NextToken=p1["NextToken"], MaxResults=10)
    assert len(p2["Shards"]) == 3 and "NextToken" not in p2
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.list_shards(StreamName="many", NextToken=p1["NextToken"])
    assert code(e) == "InvalidArgumentException"
    after = c.list_shards(StreamName="many", ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000003"})
    assert [s["ShardId"] for s in after["Shards"]] == ["shardId-000000000004"]
    c.split_shard(StreamName="many", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**120))
    latest = c.list_shards(StreamName="many", ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert "shardId-000000000000" not in [s["ShardId"] for s in latest] and len(latest) == 6
    horizon = c.list_shards(StreamName="many", ShardFilter={"Type": "AT_TRIM_HORIZON"})["Shards"]
    assert [s["ShardId"] for s in horizon] == [f"shardId-00000000000{i}" for i in range(5)]
    desc = c.describe_stream(StreamName="many", Limit=3)["StreamDescription"]
    assert len(desc["Shards"]) == 3 and desc["HasMoreShards"]
    desc2 = c.describe_stream(StreamName="many", ExclusiveStartShardId=desc["Shards"][-1]["ShardId"])["StreamDescription"]
    assert len(desc2["Shards"]) == 4 and not desc2["HasMoreShards"]

    # Tags.
    c.add_tags_to_stream(StreamName="ls-b", Tags={"a": "1", "b": "2", "c": "3"})
    t = c.list_tags_for_stream(StreamName="ls-b", Limit=2)
    assert [x["Key"] for x in t["Tags"]] == ["a", "b"] and t["HasMoreTags"]
    c.remove_tags_from_stream(StreamName="ls-b", TagKeys=["a"])
    assert [x["Key"] for x in c.list_tags_for_stream(StreamName="ls-b", ExclusiveStartTagKey="b")["Tags"]] == ["c"]
    c.tag_resource(ResourceARN=arn, Tags={"env": "test"})
    assert c.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "env", "Value": "test"}]
    c.untag_resource(ResourceARN=arn, TagKeys=["env"])
    assert c.list_tags_for_resource(ResourceARN=arn)["Tags"] == []
    assert c.list_tags_for_stream(StreamARN=c.describe_stream_summary(StreamName="ls-a")["StreamDescriptionSummary"]["StreamARN"])["Tags"] == [{"Key": "team", "Value": "cv"}]

    # Retention bounds.
    c.increase_stream_retention_period(StreamName="ls-a", RetentionPeriodHours=48)
    for call, hours in [(c.increase_stream_retention_period, 9000), (c.decrease_stream_retention_period, 12),
                        (c.increase_stream_retention_period, 30), (c.decrease_stream_retention_period, 72)]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(StreamName="ls-a", RetentionPeriodHours=hours)
        assert code(e) == "InvalidArgumentException", (call, hours)
    c.decrease_stream_retention_period(StreamName="ls-a", RetentionPeriodHours=24)
    assert c.describe_stream(StreamName="ls-a")["StreamDescription"]["RetentionPeriodHours"] == 24

    # Encryption and monitoring, stored and reported.
    c.start_stream_encryption(StreamName="ls-a", EncryptionType="KMS", KeyId="alias/aws/kinesis")
    d = c.describe_stream(StreamName="ls-a")["StreamDescription"]
    assert (d["EncryptionType"], d["KeyId"]) == ("KMS", "alias/aws/kinesis")
    assert c.put_record(StreamName="ls-a", Data=b"x", PartitionKey="k")["EncryptionType"] == "KMS"
    c.stop_stream_encryption(StreamName="ls-a", EncryptionType="KMS", KeyId="alias/aws/kinesis")
    m = c.enable_enhanced_monitoring(StreamName="ls-a", ShardLevelMetrics=["IncomingBytes"])
    assert m["DesiredShardLevelMetrics"] == ["IncomingBytes"]
    limits = c.describe_limits()
    assert limits["OpenShardCount"] >= 12 and limits["OnDemandStreamCount"] == 1

    # Consumers.
    cons = c.register_stream_consumer(StreamARN=arn, ConsumerName="app1")["Consumer"]
    assert cons["ConsumerARN"].startswith(arn + "/consumer/app1:")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.register_stream_consumer(StreamARN=arn, ConsumerName="app1")
    assert code(e) == "ResourceInUseException"
    desc = c.describe_stream_consumer(ConsumerARN=cons["ConsumerARN"])["ConsumerDescription"]
    assert (desc["ConsumerName"], desc["ConsumerStatus"], desc["StreamARN"]) == ("app1", "ACTIVE", arn)
    assert [x["ConsumerName"] for x in c.list_stream_consumers(StreamARN=arn)["Consumers"]] == ["app1"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_stream(StreamName="ls-od")
    assert code(e) == "ResourceInUseException"
    c.delete_stream(StreamName="ls-od", EnforceConsumerDeletion=True)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_stream(StreamName="ls-od")
    assert code(e) == "ResourceNotFoundException"


def test_iterators_expire_and_cannot_outlive_their_stream(server):
    c = kinesis(server)
    c.create_stream(StreamName="gone", ShardCount=1)
    c.put_record(StreamName="gone", Data=b"x", PartitionKey="k")
    it = c.get_shard_iterator(StreamName="gone", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    c.delete_stream(StreamName="gone")
    c.create_stream(StreamName="gone", ShardCount=1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_records(ShardIterator=it)
    assert code(e) == "ResourceNotFoundException"
    # A forged iterator (one byte of the payload changed) is refused.
    payload, tag = it.split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + tag
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_records(ShardIterator=forged)
    assert code(e) == "InvalidArgumentException"


def read_event_stream(resp, want, timeout=15):
    events = []
    deadline = time.time() + timeout
    for ev in resp["EventStream"]:
        events.append(ev["SubscribeToShardEvent"])
        if sum(len(e["Records"]) for e in events) >= want or time.time() > deadline:
            break
    return events


def test_subscribe_to_shard_with_two_consumers_at_once(server):
    c = kinesis(server)
    c.create_stream(StreamName="efo", ShardCount=1)
    arn = c.describe_stream_summary(StreamName="efo")["StreamDescriptionSummary"]["StreamARN"]
    consumers = [c.register_stream_consumer(StreamARN=arn, ConsumerName=f"c{i}")["Consumer"]["ConsumerARN"] for i in range(2)]
    for i in range(3):
        c.put_record(StreamName="efo", Data=f"old{i}".encode(), PartitionKey="k")
    results = {}

    def consume(i, arn_c):
        cl = kinesis(server, read_timeout=30)
        resp = cl.subscribe_to_shard(ConsumerARN=arn_c, ShardId="shardId-000000000000",
                                     StartingPosition={"Type": "TRIM_HORIZON"})
        results[i] = read_event_stream(resp, 13)

    threads = [threading.Thread(target=consume, args=(i, a)) for i, a in enumerate(consumers)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    for i in range(10):
        c.put_record(StreamName="efo", Data=f"new{i}".encode(), PartitionKey="k")
    for t in threads:
        t.join(30)
    expect = [f"old{i}".encode() for i in range(3)] + [f"new{i}".encode() for i in range(10)]
    for i in range(2):
        got = [r["Data"] for e in results[i] for r in e["Records"]]
        assert got == expect, i
        last = results[i][-1]
        assert last["ContinuationSequenceNumber"] == [r for e in results[i] for r in e["Records"]][-1]["SequenceNumber"]

    # A second subscription of one consumer to one shard within 5 s of the first is refused.
    third = c.register_stream_consumer(StreamARN=arn, ConsumerName="c2")["Consumer"]["ConsumerARN"]
    cl = kinesis(server, read_timeout=30)
    first = cl.subscribe_to_shard(ConsumerARN=third, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    assert first["EventStream"] is not None
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cl.subscribe_to_shard(ConsumerARN=third, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    assert code(e) == "ResourceInUseException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cl.subscribe_to_shard(ConsumerARN=arn + "/consumer/nobody:1", ShardId="shardId-000000000000",
                              StartingPosition={"Type": "LATEST"})
    assert code(e) == "ResourceNotFoundException"


def test_records_and_topology_survive_a_restart(data_dir):
    s = Server(data_dir).start()
    c = kinesis(s)
    c.create_stream(StreamName="keep", ShardCount=2)
    before = c.put_records(StreamName="keep", Records=[{"Data": f"r{i}".encode(), "PartitionKey": f"k{i}"} for i in range(50)])
    c.split_shard(StreamName="keep", ShardToSplit="shardId-000000000001", NewStartingHashKey=str(2**127 + 2**100))
    after = c.put_record(StreamName="keep", Data=b"after-split", PartitionKey="k1")
    s.stop()
    s = Server(data_dir).start()
    try:
        c = kinesis(s)
        shards = c.list_shards(StreamName="keep")["Shards"]
        assert len(shards) == 4
        got = {r["SequenceNumber"]: r["Data"] for r in all_records(c, "keep")}
        assert len(got) == 51
        for r in before["Records"]:
            assert r["SequenceNumber"] in got
        assert got[after["SequenceNumber"]] == b"after-split"
        new = c.put_record(StreamName="keep", Data=b"new", PartitionKey="k1")
        assert int(new["SequenceNumber"]) > int(after["SequenceNumber"])
    finally:
        s.stop()


def test_kill9_under_load_loses_no_acknowledged_record(data_dir):
    s = Server(data_dir).start()
    c = kinesis(s)
    c.create_stream(StreamName="crash", ShardCount=4)
    acked = set()
    stop = threading.Event()

    def producer(w):
        cl = kinesis(s)
        i = 0
        while not stop.is_set():
            try:
                if i % 2:
                    cl.put_record(StreamName="crash", Data=f"{w}-{i}".encode(), PartitionKey=f"{w}-{i}")
                    acked.add(f"{w}-{i}")
                else:
                    recs = [{"Data": f"{w}-{i}-{j}".encode(), "PartitionKey": f"{w}-{j}"} for j in range(20)]
                    r = cl.put_records(StreamName="crash", Records=recs)
                    acked.update(recs[k]["Data"].decode() for k, x in enumerate(r["Records"]) if "SequenceNumber" in x)
            except Exception:  # noqa: BLE001
                return
            i += 1

    threads = [threading.Thread(target=producer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    s.kill9()
    stop.set()
    for t in threads:
        t.join(10)
    print("acknowledged records:", len(acked))
    assert len(acked) > 100, "the load did not get going"
    s = Server(data_dir).start()
    try:
        got = {r["Data"].decode() for r in all_records(kinesis(s), "crash")}
        lost = acked - got
        assert not lost, f"{len(lost)} acknowledged records lost: {sorted(lost)[:10]}"
    finally:
        s.stop()


def test_throughput_limits_when_enabled(data_dir):
    s = Server(data_dir, extra_args=["--kinesis-throughput-limits"]).start()
    try:
        c = kinesis(s)
        c.create_stream(StreamName="tp", ShardCount=1)
        r = c.put_records(StreamName="tp", Records=[{"Data": b"x" * 4000, "PartitionKey": "k"} for _ in range(300)])
        assert 0 < r["FailedRecordCount"] < 300
        failed = [x for x in r["Records"] if "ErrorCode" in x]
        assert failed[0]["ErrorCode"] == "ProvisionedThroughputExceededException"
        it = c.get_shard_iterator(StreamName="tp", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        codes = []
        for _ in range(8):
            try:
                c.get_records(ShardIterator=it, Limit=1)
                codes.append("ok")
            except botocore.exceptions.ClientError as e:
                codes.append(e.response["Error"]["Code"])
        assert "ProvisionedThroughputExceededException" in codes and codes[0] == "ok"
    finally:
        s.stop()


def test_aws_cli(server):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
    aws = [os.path.join(os.path.dirname(os.environ.get("KINESCOPE_PYTHON", "")) or ".venv/bin", "aws"),
           "--endpoint-url", server.url, "kinesis"]
    if not os.path.exists(aws[0]):
        aws[0] = ".venv/bin/aws"
    run = lambda *a: json.loads(subprocess.run(aws + list(a), env=env, check=True, capture_output=True, text=True).stdout or "{}")
    run("create-stream", "--stream-name", "cli", "--shard-count", "1")
    put = run("put-record", "--stream-name", "cli", "--partition-key", "k", "--data", "from the cli")
    it = run("get-shard-iterator", "--stream-name", "cli", "--shard-id", put["ShardId"], "--shard-iterator-type", "TRIM_HORIZON")
    recs = run("get-records", "--shard-iterator", it["ShardIterator"])["Records"]
    assert base64.b64decode(recs[0]["Data"]) == b"from the cli"


def test_cbor_requests_get_cbor_answers(server):
    """The Java SDK's default wire (application/x-amz-cbor-1.1), spoken with cbor2 and
    signed by botocore: blobs as byte strings, timestamps as tag 1 epoch milliseconds."""
    import cbor2
    import urllib.request
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    c = kinesis(server)
    c.create_stream(StreamName="cbor", ShardCount=1)

    def call(op, body):
        data = cbor2.dumps(body)
        req = AWSRequest(method="POST", url=server.url + "/", data=data, headers={
            "X-Amz-Target": f"Kinesis_20131202.{op}", "Content-Type": "application/x-amz-cbor-1.1"})
        SigV4Auth(Credentials("anonymous", "anonymous"), "kinesis", "us-east-1").add_auth(req)
        http = urllib.request.Request(server.url + "/", data=data, headers=dict(req.headers), method="POST")
        try:
            with urllib.request.urlopen(http, timeout=10) as r:
                assert r.headers["Content-Type"] == "application/x-amz-cbor-1.1"
                raw = r.read()
                # cbor2 reads tag 1 as epoch seconds; the Java SDK's convention is
                # milliseconds. Retag it (4242, unassigned) so cbor2 hands the number over:
                # CBOR counts items rather than bytes, so the longer tag head is safe.
                return r.status, cbor2.loads(raw.replace(b"\xc1\x1b", b"\xd9\x10\x92\x1b"))
        except urllib.error.HTTPError as e:
            # Errors answer a CBOR request in CBOR too, as the Java SDK parses them.
            assert e.headers["Content-Type"] == "application/x-amz-cbor-1.1"
            return e.code, cbor2.loads(e.read())

    status, put = call("PutRecord", {"StreamName": "cbor", "Data": b"\x00\x01binary", "PartitionKey": "k"})
    assert status == 200 and put["ShardId"] == "shardId-000000000000"
    status, it = call("GetShardIterator", {"StreamName": "cbor", "ShardId": "shardId-000000000000",
                                           "ShardIteratorType": "AT_TIMESTAMP",
                                           "Timestamp": cbor2.CBORTag(1, int((time.time() - 60) * 1000))})
    assert status == 200
    status, got = call("GetRecords", {"ShardIterator": it["ShardIterator"]})
    assert status == 200
    rec = got["Records"][0]
    assert rec["Data"] == b"\x00\x01binary" and rec["SequenceNumber"] == put["SequenceNumber"]
    arrival = rec["ApproximateArrivalTimestamp"]
    assert isinstance(arrival, cbor2.CBORTag) and arrival.tag == 4242  # tag 1 on the wire
    assert abs(arrival.value / 1000 - time.time()) < 60
    # boto3 (JSON) sees the same record.
    assert drain(c, "cbor", "shardId-000000000000")[0]["Data"] == b"\x00\x01binary"
    status, err = call("DescribeStream", {"StreamName": "missing"})
    assert status == 400 and err["__type"] == "ResourceNotFoundException"
