"""STS as SDK credential chains use it: boto3's GetSessionToken and AssumeRole, the aws
CLI assuming a role from a profile (`role_arn` + `source_profile`), and the temporary
credentials they get signing Kinesis, SQS and Kinesis Video calls; a forged or missing
session token refused with each service's own code."""

import os
import subprocess

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, Server


@pytest.fixture
def signed(data_dir):
    s = Server(data_dir, keys=(ACCESS_KEY, SECRET_KEY)).start()
    yield s
    s.stop()


def client(server, service, creds):
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds.get("SessionToken"),
                        config=Config(retries={"total_max_attempts": 1}))


def test_session_and_role_credentials_sign_every_service(signed):
    sts = signed.client("sts")
    me = sts.get_caller_identity()
    account = me["Account"]
    session = sts.get_session_token(DurationSeconds=900)["Credentials"]
    assert session["AccessKeyId"].startswith("ASIA") and len(session["AccessKeyId"]) == 20
    assert session["Expiration"].tzinfo is not None
    client(signed, "kinesis", session).create_stream(StreamName="s", ShardCount=1)
    assert "s" in client(signed, "kinesis", session).list_streams()["StreamNames"]
    client(signed, "sqs", session).create_queue(QueueName="q")
    client(signed, "kinesisvideo", session).create_stream(StreamName="v")
    assert client(signed, "sts", session).get_caller_identity()["Arn"] == me["Arn"]
    with pytest.raises(ClientError) as e:
        client(signed, "sts", session).get_session_token()
    assert e.value.response["Error"]["Code"] == "AccessDenied"

    role = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/reader", RoleSessionName="cv-1")
    assert role["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{account}:assumed-role/reader/cv-1"
    creds = role["Credentials"]
    assert client(signed, "sts", creds).get_caller_identity()["Arn"] == role["AssumedRoleUser"]["Arn"]
    assert client(signed, "kinesis", creds).describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]
    # Role chaining is capped at an hour, as in AWS; another account's role is refused.
    chained = client(signed, "sts", creds)
    with pytest.raises(ClientError) as e:
        chained.assume_role(RoleArn=f"arn:aws:iam::{account}:role/reader", RoleSessionName="chain", DurationSeconds=7200)
    assert e.value.response["Error"]["Code"] == "ValidationError"
    assert chained.assume_role(RoleArn=f"arn:aws:iam::{account}:role/reader", RoleSessionName="chain")["Credentials"]
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn="arn:aws:iam::210987654321:role/other", RoleSessionName="xx")
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_a_forged_or_missing_session_token_is_refused_in_each_services_words(signed):
    session = signed.client("sts").get_session_token()["Credentials"]
    forged = dict(session, SessionToken=session["SessionToken"][:-4] + "AAAA")
    for service, call, code, status in [
        ("kinesis", lambda c: c.list_streams(), "UnrecognizedClientException", 400),
        ("sts", lambda c: c.get_caller_identity(), "InvalidClientTokenId", 403),
        ("kinesisvideo", lambda c: c.list_streams(), "UnrecognizedClientException", 403),
    ]:
        for creds in (forged, dict(session, SessionToken=None)):
            with pytest.raises(ClientError) as e:
                call(client(signed, service, creds))
            err = e.value.response
            assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (code, status), (service, err)
    # Another server's session (another key) is as unknown.
    with pytest.raises(ClientError) as e:
        client(signed, "sqs", forged).list_queues()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_the_aws_cli_assumes_a_role_from_a_profile(signed, tmp_path):
    account = signed.client("sts").get_caller_identity()["Account"]
    config = tmp_path / "config"
    config.write_text(
        "[profile base]\nregion = us-east-1\n"
        f"[profile cv]\nregion = us-east-1\nrole_arn = arn:aws:iam::{account}:role/cv-worker\nsource_profile = base\n"
        "role_session_name = nightly\n"
    )
    creds = tmp_path / "credentials"
    creds.write_text(f"[base]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_ENDPOINT_URL=signed.url,
               HOME=str(tmp_path))
    aws = [os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin", "aws")]
    out = subprocess.run(aws + ["--profile", "cv", "sts", "get-caller-identity", "--query", "Arn", "--output", "text"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"arn:aws:sts::{account}:assumed-role/cv-worker/nightly"
    out = subprocess.run(aws + ["--profile", "cv", "kinesis", "list-streams"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "StreamNames" in out.stdout, out.stderr
    # The CLI cached the role's session where it always does.
    assert list((tmp_path / ".aws" / "cli" / "cache").glob("*.json"))
