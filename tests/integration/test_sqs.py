"""SQS through boto3 and the aws CLI against the real binary."""

import hashlib
import json
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ROOT, Server


def sqs(server):
    return server.client("sqs")


def error_of(call, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    err = e.value.response["Error"]
    return err["Code"], err.get("QueryErrorCode"), e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_send_receive_delete_with_attributes_and_digests(server):
    c = sqs(server)
    url = c.create_queue(QueueName="events")["QueueUrl"]
    assert url == f"{server.url}/000000000000/events"
    assert c.create_queue(QueueName="events")["QueueUrl"] == url, "same attributes: the existing queue"
    attrs = {
        "camera": {"DataType": "String", "StringValue": "lobby"},
        "frame": {"DataType": "Number", "StringValue": "42"},
        "thumb": {"DataType": "Binary", "BinaryValue": b"\x89PNG"},
    }
    sent = c.send_message(QueueUrl=url, MessageBody="motion ✓", MessageAttributes=attrs)
    assert sent["MD5OfMessageBody"] == hashlib.md5("motion ✓".encode()).hexdigest()
    assert len(sent["MD5OfMessageAttributes"]) == 32

    got = c.receive_message(QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"],
                            VisibilityTimeout=30)["Messages"]
    assert len(got) == 1
    m = got[0]
    assert m["Body"] == "motion ✓" and m["MessageId"] == sent["MessageId"]
    assert m["MessageAttributes"]["thumb"]["BinaryValue"] == b"\x89PNG"
    assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(m["Attributes"]["SentTimestamp"]) > 1_600_000_000_000
    # Only the attributes asked for, by prefix.
    c.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    again = c.receive_message(QueueUrl=url, MessageAttributeNames=["fra.*"])["Messages"][0]
    assert set(again["MessageAttributes"]) == {"frame"}, "a prefix before .* matches names that start with it"
    assert "Attributes" not in again
    # The receipt of the earlier receive still works, as on SQS: it changes the
    # visibility of the message in flight and deletes it; deleting again succeeds.
    c.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=60)
    c.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    attrs = c.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    c.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    assert error_of(c.change_message_visibility, QueueUrl=url, ReceiptHandle=again["ReceiptHandle"],
                    VisibilityTimeout=5)[0] == "AWS.SimpleQueueService.MessageNotInflight"
    assert attrs["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:events"
    assert c.receive_message(QueueUrl=url).get("Messages") is None


def test_errors_have_sqs_codes(server):
    c = sqs(server)
    url = c.create_queue(QueueName="errs", Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    missing = f"{server.url}/000000000000/nope"
    assert error_of(c.send_message, QueueUrl=missing, MessageBody="x") == (
        "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", 400)
    with pytest.raises(c.exceptions.QueueDoesNotExist):
        c.get_queue_url(QueueName="nope")
    assert error_of(c.send_message, QueueUrl=url, MessageBody="bad \x01 char")[0] == "InvalidMessageContents"
    assert error_of(c.send_message, QueueUrl=url, MessageBody="x" * 1025)[0] == "InvalidParameterValue"
    assert error_of(c.create_queue, QueueName="errs", Attributes={"VisibilityTimeout": "5"})[0] == "QueueAlreadyExists"
    assert error_of(c.create_queue, QueueName="bad name!")[0] == "InvalidParameterValue"
    assert error_of(c.set_queue_attributes, QueueUrl=url, Attributes={"Bogus": "1"})[0] == "InvalidAttributeName"
    assert error_of(c.set_queue_attributes, QueueUrl=url, Attributes={"VisibilityTimeout": "99999"})[0] == "InvalidAttributeValue"
    assert error_of(c.delete_message, QueueUrl=url, ReceiptHandle="forged")[0] == "ReceiptHandleIsInvalid"
    assert error_of(c.receive_message, QueueUrl=url, MaxNumberOfMessages=11)[0] == "InvalidParameterValue"
    entries = [{"Id": str(i), "MessageBody": "m"} for i in range(11)]
    assert error_of(c.send_message_batch, QueueUrl=url, Entries=entries)[0] == \
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    dup = [{"Id": "a", "MessageBody": "m"}, {"Id": "a", "MessageBody": "n"}]
    assert error_of(c.send_message_batch, QueueUrl=url, Entries=dup)[0] == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    assert error_of(c.send_message_batch, QueueUrl=url, Entries=[{"Id": "bad id", "MessageBody": "m"}])[0] == \
        "AWS.SimpleQueueService.InvalidBatchEntryId"
    c.purge_queue(QueueUrl=url)
    assert error_of(c.purge_queue, QueueUrl=url)[0] == "AWS.SimpleQueueService.PurgeQueueInProgress"
    c.delete_queue(QueueUrl=url)
    assert error_of(c.create_queue, QueueName="errs")[0] == "AWS.SimpleQueueService.QueueDeletedRecently"


def test_batches_report_each_entry(server):
    c = sqs(server)
    url = c.create_queue(QueueName="batch")["QueueUrl"]
    r = c.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "ok1", "MessageBody": "one"},
        {"Id": "bad", "MessageBody": "\x00"},
        {"Id": "ok2", "MessageBody": "two", "DelaySeconds": 0},
    ])
    assert sorted(s["Id"] for s in r["Successful"]) == ["ok1", "ok2"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [("bad", "InvalidMessageContents", True)]
    got = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "two"]
    r = c.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "a", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "b", "ReceiptHandle": "forged", "VisibilityTimeout": 0},
    ])
    assert [s["Id"] for s in r["Successful"]] == ["a"] and r["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    r = c.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "x", "ReceiptHandle": got[1]["ReceiptHandle"]},
        {"Id": "y", "ReceiptHandle": "forged"},
    ])
    assert [s["Id"] for s in r["Successful"]] == ["x"] and r["Failed"][0]["Id"] == "y"
    big = [{"Id": str(i), "MessageBody": "x" * 200_000} for i in range(6)]
    assert error_of(c.send_message_batch, QueueUrl=url, Entries=big)[0] == "AWS.SimpleQueueService.BatchRequestTooLong"


def test_delay_and_visibility(server):
    c = sqs(server)
    url = c.create_queue(QueueName="timing", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    c.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    attrs = c.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert attrs == {"ApproximateNumberOfMessagesDelayed": "1"}
    assert c.receive_message(QueueUrl=url).get("Messages") is None
    got = c.receive_message(QueueUrl=url, WaitTimeSeconds=3)["Messages"]
    assert got[0]["Body"] == "later"
    # Visibility 1 s (the queue's): it comes back with a higher receive count.
    again = c.receive_message(QueueUrl=url, WaitTimeSeconds=3, MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_long_poll_wakes_when_a_message_arrives(server):
    c = sqs(server)
    url = c.create_queue(QueueName="longpoll")["QueueUrl"]
    result = {}

    def poll():
        start = time.monotonic()
        r = c.receive_message(QueueUrl=url, WaitTimeSeconds=10)
        result["elapsed"] = time.monotonic() - start
        result["messages"] = r.get("Messages", [])

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(1.0)
    sqs(server).send_message(QueueUrl=url, MessageBody="wake up")
    t.join(15)
    assert [m["Body"] for m in result["messages"]] == ["wake up"]
    # Woken by the send, long before the 10 s wait ran out (the wake-up latency itself
    # is measured by the benchmark, not asserted here).
    assert result["elapsed"] < 5, result
    # An empty long poll returns after its wait, empty.
    start = time.monotonic()
    assert c.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None
    assert time.monotonic() - start >= 0.9


def test_fifo_order_groups_and_deduplication(server):
    c = sqs(server)
    url = c.create_queue(QueueName="frames.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    assert error_of(c.send_message, QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")[0] == "MissingParameter"
    assert error_of(c.send_message, QueueUrl=url, MessageBody="x", MessageGroupId="g")[0] == "InvalidParameterValue"
    seqs = []
    for i in range(6):
        r = c.send_message(QueueUrl=url, MessageBody=f"{'a' if i % 2 == 0 else 'b'}{i}",
                           MessageGroupId="a" if i % 2 == 0 else "b", MessageDeduplicationId=f"d{i}")
        seqs.append(int(r["SequenceNumber"]))
    assert seqs == sorted(seqs)
    dup = c.send_message(QueueUrl=url, MessageBody="again", MessageGroupId="a", MessageDeduplicationId="d0")
    first = c.receive_message(QueueUrl=url, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in first] == ["a0"]
    assert first[0]["MessageId"] == dup["MessageId"], "a duplicate send returns the original message"
    assert first[0]["Attributes"]["MessageGroupId"] == "a"
    # Group a is locked while a0 is in flight; b flows.
    rest = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in rest] == ["b1", "b3", "b5"]
    c.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    nxt = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in nxt] == ["a2", "a4"]

    cbd = c.create_queue(QueueName="cbd.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    one = c.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="g")
    two = c.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="g")
    assert one["MessageId"] == two["MessageId"]
    assert len(c.receive_message(QueueUrl=cbd, MaxNumberOfMessages=10)["Messages"]) == 1


def test_fifo_with_several_consumers_keeps_each_group_in_order(server):
    c = sqs(server)
    url = c.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"})["QueueUrl"]
    groups = ["g0", "g1", "g2", "g3"]
    for i in range(40):
        g = groups[i % 4]
        c.send_message_batch(QueueUrl=url, Entries=[{"Id": "e", "MessageBody": f"{g}:{i}", "MessageGroupId": g,
                                                      "MessageDeduplicationId": str(i)}])
    seen = {g: [] for g in groups}
    lock = threading.Lock()

    def consume():
        client = sqs(server)
        idle = 0
        while idle < 3:
            got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=3, WaitTimeSeconds=1).get("Messages", [])
            if not got:
                idle += 1
                continue
            idle = 0
            with lock:
                for m in got:
                    g, i = m["Body"].split(":")
                    seen[g].append(int(i))
            for m in got:
                client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for g in groups:
        assert seen[g] == sorted(seen[g]) and len(seen[g]) == 10, seen


def test_dead_letter_queue_after_max_receive_count(server):
    c = sqs(server)
    dlq = c.create_queue(QueueName="dead")["QueueUrl"]
    dlq_arn = c.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = c.create_queue(QueueName="work", Attributes={
        "VisibilityTimeout": "0",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
    })["QueueUrl"]
    sent = c.send_message(QueueUrl=src, MessageBody="poison")
    for _ in range(2):
        assert c.receive_message(QueueUrl=src)["Messages"][0]["Body"] == "poison"
    assert c.receive_message(QueueUrl=src).get("Messages") is None
    moved = c.receive_message(QueueUrl=dlq, MessageSystemAttributeNames=["All"])["Messages"][0]
    assert moved["MessageId"] == sent["MessageId"]
    assert moved["Attributes"]["DeadLetterQueueSourceArn"].endswith(":work")
    assert c.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    fifo_dlq = c.create_queue(QueueName="dead.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fifo_arn = c.get_queue_attributes(QueueUrl=fifo_dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": fifo_arn, "maxReceiveCount": 2})
    assert error_of(c.create_queue, QueueName="std", Attributes={"RedrivePolicy": policy})[0] == "InvalidParameterValue"


def test_queue_management(server):
    c = sqs(server)
    for n in ["cam-a", "cam-b", "cam-c", "other"]:
        c.create_queue(QueueName=n, tags={"site": "hq"})
    urls = c.list_queues(QueueNamePrefix="cam-")["QueueUrls"]
    assert [u.rsplit("/", 1)[1] for u in urls] == ["cam-a", "cam-b", "cam-c"]
    page = c.list_queues(QueueNamePrefix="cam-", MaxResults=2)
    assert len(page["QueueUrls"]) == 2 and "NextToken" in page
    rest = c.list_queues(QueueNamePrefix="cam-", MaxResults=2, NextToken=page["NextToken"])
    assert rest["QueueUrls"] == [urls[2]] and "NextToken" not in rest
    url = c.get_queue_url(QueueName="cam-a")["QueueUrl"]
    c.tag_queue(QueueUrl=url, Tags={"camera": "lobby"})
    c.untag_queue(QueueUrl=url, TagKeys=["site"])
    assert c.list_queue_tags(QueueUrl=url)["Tags"] == {"camera": "lobby"}
    c.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "3", "MessageRetentionPeriod": "60"})
    attrs = c.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds", "MessageRetentionPeriod"])["Attributes"]
    assert attrs == {"DelaySeconds": "3", "MessageRetentionPeriod": "60"}
    c.add_permission(QueueUrl=url, Label="viewers", AWSAccountIds=["111122223333"], Actions=["ReceiveMessage"])
    policy = json.loads(c.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert policy["Statement"][0]["Sid"] == "viewers"
    c.remove_permission(QueueUrl=url, Label="viewers")
    assert error_of(c.remove_permission, QueueUrl=url, Label="viewers")[0] == "InvalidParameterValue"
    c.delete_queue(QueueUrl=url)
    assert "cam-a" not in " ".join(c.list_queues().get("QueueUrls", []))


def test_messages_and_queues_survive_a_restart(data_dir):
    s = Server(data_dir).start()
    try:
        c = sqs(s)
        url = c.create_queue(QueueName="durable.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for i in range(5):
            c.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g", MessageDeduplicationId=f"d{i}")
        port = s.port
    finally:
        s.stop()
    s = Server(data_dir).start(port=port)
    try:
        c = sqs(s)
        got = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in got] == [f"m{i}" for i in range(5)]
        # Deduplication ids are remembered across the restart.
        dup = c.send_message(QueueUrl=url, MessageBody="m0", MessageGroupId="g", MessageDeduplicationId="d0")
        assert dup["MessageId"] == got[0]["MessageId"]
    finally:
        s.stop()


def test_the_aws_cli_works_too(server):
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "PATH": "/usr/bin:/bin"}
    aws = [str(ROOT / ".venv" / "bin" / "aws"), "--endpoint-url", server.url, "--output", "json", "sqs"]
    url = json.loads(subprocess.run(aws + ["create-queue", "--queue-name", "cli"], env=env, check=True,
                                    capture_output=True, text=True).stdout)["QueueUrl"]
    subprocess.run(aws + ["send-message", "--queue-url", url, "--message-body", "from the cli"], env=env, check=True,
                   capture_output=True)
    out = json.loads(subprocess.run(aws + ["receive-message", "--queue-url", url], env=env, check=True,
                                    capture_output=True, text=True).stdout)
    assert out["Messages"][0]["Body"] == "from the cli"


def test_kill9_under_load_loses_no_acknowledged_message(data_dir):
    """Senders, receivers and deleters run flat out; the server is killed with SIGKILL.
    After a restart every message whose SendMessage returned is either one a consumer
    asked to delete or still receivable."""
    s = Server(data_dir).start()
    c = sqs(s)
    std = c.create_queue(QueueName="load", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    fifo = c.create_queue(QueueName="load.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "1"})["QueueUrl"]
    acked = {std: set(), fifo: set()}
    deleted = {std: set(), fifo: set()}
    stop = threading.Event()

    def sender(url, worker):
        client = sqs(s)
        i = 0
        while not stop.is_set():
            body = f"w{worker}-{i}"
            kw = {"MessageGroupId": f"g{i % 3}", "MessageDeduplicationId": body} if url == fifo else {}
            try:
                if i % 2:
                    client.send_message(QueueUrl=url, MessageBody=body, **kw)
                    acked[url].add(body)
                else:
                    entries = [{"Id": f"e{j}", "MessageBody": f"{body}-{j}",
                                **({"MessageGroupId": f"g{j % 3}", "MessageDeduplicationId": f"{body}-{j}"} if url == fifo else {})}
                               for j in range(5)]
                    r = client.send_message_batch(QueueUrl=url, Entries=entries)
                    acked[url].update(f"{body}-{e['Id'][1:]}" for e in r["Successful"])
            except Exception:
                return
            i += 1

    def consumer(url):
        client = sqs(s)
        while not stop.is_set():
            try:
                got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
                for m in got:
                    # Counted before the call: a delete the server made durable just as it
                    # was killed never answers, and the message is rightly gone.
                    deleted[url].add(m["Body"])
                    client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            except Exception:
                return

    threads = [threading.Thread(target=sender, args=(u, w)) for u in (std, fifo) for w in range(2)]
    threads += [threading.Thread(target=consumer, args=(u,)) for u in (std, fifo)]
    for t in threads:
        t.start()
    time.sleep(3)
    s.kill9()
    stop.set()
    for t in threads:
        t.join(10)
    print("acked", {u.rsplit("/", 1)[1]: len(a) for u, a in acked.items()}, "deleted", {u.rsplit("/", 1)[1]: len(d) for u, d in deleted.items()})
    assert sum(len(a) for a in acked.values()) > 50, "the load did not get going"

    s = Server(data_dir).start()
    try:
        c = sqs(s)
        for url in (std, fifo):
            remaining = set()
            idle = 0
            while idle < 3:
                got = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
                idle = 0 if got else idle + 1
                for m in got:
                    remaining.add(m["Body"])
                    c.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            lost = acked[url] - deleted[url] - remaining
            assert not lost, f"{len(lost)} acknowledged messages lost from {url}: {sorted(lost)[:10]}"
    finally:
        s.stop()


def query(server, params, path="/", secret=None):
    """A Query-protocol request (form body, XML answer), signed with SigV4 as older
    SDKs sign it; returns (status, parsed XML root)."""
    import urllib.error
    import urllib.parse
    import urllib.request
    import xml.etree.ElementTree as ET
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from conftest import ACCESS_KEY, SECRET_KEY

    body = urllib.parse.urlencode({"Version": "2012-11-05", **params})
    req = AWSRequest(method="POST", url=server.url + path, data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(ACCESS_KEY, secret or SECRET_KEY), "sqs", "us-east-1").add_auth(req)
    r = urllib.request.Request(req.url, data=body.encode(), method="POST", headers=dict(req.headers))
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, ET.fromstring(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, ET.fromstring(e.read())


def test_query_protocol_with_a_signed_form_request(signed_server):
    ns = {"q": "http://queue.amazonaws.com/doc/2012-11-05/"}
    status, root = query(signed_server, {"Action": "CreateQueue", "QueueName": "legacy",
                                         "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "45"})
    assert status == 200, root
    url = root.find("q:CreateQueueResult/q:QueueUrl", ns).text
    assert url.endswith("/000000000000/legacy")
    status, root = query(signed_server, {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "old sdk",
                                         "MessageAttribute.1.Name": "camera",
                                         "MessageAttribute.1.Value.DataType": "String",
                                         "MessageAttribute.1.Value.StringValue": "lobby"})
    assert status == 200
    md5 = root.find("q:SendMessageResult/q:MD5OfMessageBody", ns).text
    assert md5 == hashlib.md5(b"old sdk").hexdigest()
    # Sent to the queue's own URL path, as the oldest SDKs do.
    status, root = query(signed_server, {"Action": "ReceiveMessage", "MessageAttributeName.1": "All",
                                         "AttributeName.1": "All"}, path="/000000000000/legacy")
    assert status == 200
    msg = root.find("q:ReceiveMessageResult/q:Message", ns)
    assert msg.find("q:Body", ns).text == "old sdk"
    assert msg.find("q:MessageAttribute/q:Value/q:StringValue", ns).text == "lobby"
    names = [a.find("q:Name", ns).text for a in msg.findall("q:Attribute", ns)]
    assert "SentTimestamp" in names
    # The same queue through boto3's JSON protocol.
    c = signed_server.client("sqs")
    attrs = c.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs == {"VisibilityTimeout": "45"}
    # Errors in the Query shape, including a bad signature.
    status, root = query(signed_server, {"Action": "GetQueueUrl", "QueueName": "missing"})
    assert status == 400
    assert root.find("q:Error/q:Code", ns).text == "AWS.SimpleQueueService.NonExistentQueue"
    status, root = query(signed_server, {"Action": "ListQueues"}, secret="wrong")
    assert status == 403 and root.find("q:Error/q:Code", ns).text == "SignatureDoesNotMatch"
    status, root = query(signed_server, {"Action": "Frobnicate"})
    assert status == 400 and root.find("q:Error/q:Code", ns).text == "AWS.SimpleQueueService.UnsupportedOperation"


def test_message_move_task_redrives_the_dead_letter_queue(server):
    c = sqs(server)
    dlq = c.create_queue(QueueName="redrive-dlq")["QueueUrl"]
    dlq_arn = c.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = c.create_queue(QueueName="redrive-src", Attributes={
        "VisibilityTimeout": "0", "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})})["QueueUrl"]
    ids = {c.send_message(QueueUrl=src, MessageBody=f"m{i}")["MessageId"] for i in range(5)}
    for _ in range(10):
        c.receive_message(QueueUrl=src, MaxNumberOfMessages=10)
    assert c.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"] == \
        {"ApproximateNumberOfMessages": "5"}
    src_arn = c.get_queue_attributes(QueueUrl=src, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert error_of(c.start_message_move_task, SourceArn=src_arn)[0] == "InvalidParameterValue"
    handle = c.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=50)["TaskHandle"]
    deadline = time.time() + 10
    while time.time() < deadline:
        task = c.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
        if task["Status"] == "COMPLETED":
            break
        time.sleep(0.1)
    assert task["Status"] == "COMPLETED" and task["ApproximateNumberOfMessagesMoved"] == 5, task
    assert error_of(c.cancel_message_move_task, TaskHandle=handle)[0] == "InvalidParameterValue"
    back = c.receive_message(QueueUrl=src, MaxNumberOfMessages=10)["Messages"]
    assert {m["MessageId"] for m in back} == ids
    assert error_of(c.cancel_message_move_task, TaskHandle="nope")[0] == "ResourceNotFoundException"


def test_fifo_receive_attempt_id_returns_the_same_messages(server):
    c = sqs(server)
    url = c.create_queue(QueueName="attempt.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    for i in range(3):
        c.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId=f"g{i}")
    first = c.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="try-1")["Messages"]
    retry = c.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="try-1")["Messages"]
    assert [(m["MessageId"], m["ReceiptHandle"]) for m in first] == [(m["MessageId"], m["ReceiptHandle"]) for m in retry]
    other = c.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="try-2")["Messages"]
    assert [m["Body"] for m in other] == ["m2"]


def test_a_backlog_costs_memory_per_message_not_per_byte(server):
    """200 MB of unreceived messages: their bodies stay on disk, not in the server."""
    import os
    c = sqs(server)
    url = c.create_queue(QueueName="backlog")["QueueUrl"]

    def rss_kb():
        with open(f"/proc/{server.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    c.send_message(QueueUrl=url, MessageBody="warm-up")
    before = rss_kb()
    body = "x" * 100_000
    for b in range(200):
        entries = [{"Id": f"m{i}", "MessageBody": f"{b}-{i}-{body}"} for i in range(10)]
        assert not c.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
    grown_mb = (rss_kb() - before) / 1024
    print(f"RSS grew {grown_mb:.0f} MB for 200 MB of queued bodies")
    assert grown_mb < 80, f"RSS grew {grown_mb:.0f} MB for 200 MB of queued bodies"
    attrs = c.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "2001"
    got = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert all(m["Body"].endswith(body) or m["Body"] == "warm-up" for m in got)
