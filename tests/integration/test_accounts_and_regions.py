"""Accounts and regions as AWS keeps them: the account comes from the access key (an
`account_id` per `[[access_keys]]`), the region from the request's SigV4 credential
scope, and every queue, data stream and video stream lives in one account and region.
STS GetCallerIdentity tells a client which account it acts in. Driven with boto3 and
the aws CLI against the real binary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import Server

KEYS = {
    "team-a": ("AKIDTEAMA", "secret-a", "111111111111"),
    "team-b": ("AKIDTEAMB", "secret-b", "222222222222"),
}


@pytest.fixture
def shared(tmp_path):
    """One server shared by two teams, each with its own key and account."""
    config = tmp_path / "kinescope.toml"
    config.write_text("account_id = \"000000000000\"\nregion = \"us-east-1\"\n" + "".join(
        f"[[access_keys]]\nid = \"{k}\"\nsecret = \"{s}\"\naccount_id = \"{a}\"\n\n" for k, s, a in KEYS.values()
    ))
    s = Server(tmp_path / "data", extra_args=["--config", str(config)]).start()
    yield s
    s.stop()


def client(server, service, team, region):
    key, secret, _ = KEYS[team]
    return server.client(service, key=key, secret=secret, region_name=region)


def test_each_team_sees_its_own_account_and_each_region_its_own_resources(shared):
    for team, (_, _, account) in KEYS.items():
        ident = client(shared, "sts", team, "eu-west-1").get_caller_identity()
        assert ident["Account"] == account
        assert ident["Arn"] == f"arn:aws:iam::{account}:user/{KEYS[team][0]}"

    # The same queue name in two accounts and two regions: four queues.
    urls = {}
    for team in KEYS:
        for region in ("us-east-1", "eu-west-1"):
            sqs = client(shared, "sqs", team, region)
            urls[(team, region)] = sqs.create_queue(QueueName="frames")["QueueUrl"]
            sqs.send_message(QueueUrl=urls[(team, region)], MessageBody=f"{team} {region}")
    assert urls[("team-a", "us-east-1")].endswith("/111111111111/frames")
    assert urls[("team-b", "us-east-1")].endswith("/222222222222/frames")
    for (team, region), url in urls.items():
        sqs = client(shared, "sqs", team, region)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        assert arn == f"arn:aws:sqs:{region}:{KEYS[team][2]}:frames"
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in got] == [f"{team} {region}"], "each queue holds only its own message"
        assert sqs.list_queues()["QueueUrls"] == [url]
    # A queue URL of another account does not exist for the caller.
    with pytest.raises(ClientError) as e:
        client(shared, "sqs", "team-b", "us-east-1").send_message(
            QueueUrl=urls[("team-a", "us-east-1")], MessageBody="intruder")
    assert e.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"

    # Data streams: a us-west-2 client does not see us-east-1's streams.
    east = client(shared, "kinesis", "team-a", "us-east-1")
    west = client(shared, "kinesis", "team-a", "us-west-2")
    east.create_stream(StreamName="detections", ShardCount=1)
    east.get_waiter("stream_exists").wait(StreamName="detections", WaiterConfig={"Delay": 0.2})
    assert west.list_streams()["StreamNames"] == []
    assert client(shared, "kinesis", "team-b", "us-east-1").list_streams()["StreamNames"] == []
    summary = east.describe_stream_summary(StreamName="detections")["StreamDescriptionSummary"]
    assert summary["StreamARN"] == "arn:aws:kinesis:us-east-1:111111111111:stream/detections"
    with pytest.raises(ClientError) as e:
        west.describe_stream_summary(StreamARN=summary["StreamARN"])
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"

    # Video streams: ARNs carry the caller's region and account; others see nothing.
    kv_a = client(shared, "kinesisvideo", "team-a", "ap-south-1")
    arn = kv_a.create_stream(StreamName="door", DataRetentionInHours=1)["StreamARN"]
    assert arn.startswith("arn:aws:kinesisvideo:ap-south-1:111111111111:stream/door/")
    assert client(shared, "kinesisvideo", "team-b", "ap-south-1").list_streams()["StreamInfoList"] == []
    assert client(shared, "kinesisvideo", "team-a", "us-east-1").list_streams()["StreamInfoList"] == []
    with pytest.raises(ClientError) as e:
        client(shared, "kinesisvideo", "team-b", "ap-south-1").describe_stream(StreamARN=arn)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # The other team may use the same name in its own account.
    kv_b = client(shared, "kinesisvideo", "team-b", "ap-south-1")
    assert kv_b.create_stream(StreamName="door")["StreamARN"].startswith(
        "arn:aws:kinesisvideo:ap-south-1:222222222222:stream/door/")


def test_resources_keep_their_scope_across_a_restart(shared):
    kv = client(shared, "kinesisvideo", "team-b", "eu-central-1")
    arn = kv.create_stream(StreamName="yard")["StreamARN"]
    client(shared, "sqs", "team-b", "eu-central-1").create_queue(QueueName="jobs")
    shared.stop()
    shared.start()
    kv = client(shared, "kinesisvideo", "team-b", "eu-central-1")
    assert kv.describe_stream(StreamName="yard")["StreamInfo"]["StreamARN"] == arn
    assert client(shared, "sqs", "team-b", "eu-central-1").list_queues()["QueueUrls"][0].endswith(
        "/222222222222/jobs")
    assert client(shared, "sqs", "team-a", "eu-central-1").list_queues().get("QueueUrls", []) == []


def test_sts_answers_get_caller_identity_and_refuses_the_rest(shared, server):
    key, secret, account = KEYS["team-a"]
    aws = Path(sys.executable).parent / "aws"
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-west-2")
    p = subprocess.run([str(aws), "--endpoint-url", shared.url, "sts", "get-caller-identity", "--output", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"UserId": key, "Account": account, "Arn": f"arn:aws:iam::{account}:user/{key}"}

    # Roles are the caller's own account's (tests/integration/test_sts.py has the rest);
    # actions STS has and Kinescope does not answer InvalidAction.
    sts = client(shared, "sts", "team-a", "us-east-1")
    assumed = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/x", RoleSessionName="session")
    assert assumed["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{account}:assumed-role/x/session"
    other = KEYS["team-b"][2]
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=f"arn:aws:iam::{other}:role/x", RoleSessionName="session")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as e:
        sts.get_federation_token(Name="fed")
    assert e.value.response["Error"]["Code"] == "InvalidAction"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    # A wrong secret is refused as STS refuses it.
    with pytest.raises(ClientError) as e:
        shared.client("sts", key=key, secret="wrong").get_caller_identity()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # Anonymous mode (loopback, no keys): the server's account, or the account a
    # twelve-digit key id names, as LocalStack takes it.
    assert server.client("sts").get_caller_identity()["Account"] == "000000000000"
    assert server.client("sts", key="333333333333", secret="x").get_caller_identity()["Account"] == "333333333333"
