"""SigV4: boto3 and `kinescope put` with right and wrong keys, clock skew, unsigned
requests, and the refusal to run unauthenticated off loopback."""

import datetime
import subprocess
import urllib.error
import urllib.request

import botocore.auth
import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, BIN, FIXTURES, SECRET_KEY


def code_status(excinfo):
    r = excinfo.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def test_signed_requests_pass_and_bad_ones_get_403(signed_server):
    kv = signed_server.client("kinesisvideo")
    kv.create_stream(StreamName="secure")
    assert kv.describe_stream(StreamName="secure")["StreamInfo"]["StreamName"] == "secure"

    wrong_secret = signed_server.client("kinesisvideo", key=ACCESS_KEY, secret="not-the-secret")
    with pytest.raises(ClientError) as e:
        wrong_secret.describe_stream(StreamName="secure")
    assert code_status(e) == ("InvalidSignatureException", 403)

    unknown_key = signed_server.client("kinesisvideo", key="AKIDUNKNOWN", secret=SECRET_KEY)
    with pytest.raises(ClientError) as e:
        unknown_key.list_streams()
    assert code_status(e) == ("UnrecognizedClientException", 403)

    # The data-plane clients sign the same way.
    archived = signed_server.client("kinesis-video-archived-media")
    assert archived.list_fragments(StreamName="secure")["Fragments"] == []
    wrong_archived = signed_server.client("kinesis-video-archived-media", key=ACCESS_KEY, secret="nope")
    with pytest.raises(ClientError) as e:
        wrong_archived.list_fragments(StreamName="secure")
    assert code_status(e) == ("InvalidSignatureException", 403)

    req = urllib.request.Request(signed_server.url + "/listStreams", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 403 and e.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_clock_skew_over_15_minutes_is_refused(signed_server, monkeypatch):
    kv = signed_server.client("kinesisvideo")
    kv.list_streams()
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: real() - datetime.timedelta(minutes=20))
    with pytest.raises(ClientError) as e:
        kv.list_streams()
    assert code_status(e) == ("InvalidSignatureException", 403)
    assert "Signature expired" in e.value.response["Error"]["Message"]
    # 10 minutes off is within the allowed skew.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: real() + datetime.timedelta(minutes=10))
    kv.list_streams()


def test_put_media_is_authenticated_too(signed_server):
    signed_server.client("kinesisvideo").create_stream(StreamName="cam")
    rc, acks, _ = signed_server.put("cam", FIXTURES / "av.mp4")
    assert len([a for a in acks if a["EventType"] == "PERSISTED"]) == 4

    rc, acks, err = signed_server.put("cam", FIXTURES / "av.mp4", env_keys=(ACCESS_KEY, "wrong"), check=False)
    assert rc != 0 and "403" in err and "InvalidSignatureException" in err and acks == []
    rc, acks, err = signed_server.put("cam", FIXTURES / "av.mp4", env_keys=(), check=False)
    assert rc != 0 and "MissingAuthenticationTokenException" in err

    archived = signed_server.client("kinesis-video-archived-media")
    assert len(archived.list_fragments(StreamName="cam")["Fragments"]) == 4


def test_no_keys_refuses_non_loopback_address(data_dir):
    # Refused before binding anything: nothing listens off loopback.
    p = subprocess.run([BIN, "serve", "--data-dir", str(data_dir), "--http", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode != 0
    assert "--allow-anonymous" in p.stderr and "no access keys" in p.stderr


def test_each_service_words_a_bad_signature_and_an_unknown_key_as_aws_does(signed_server):
    """Kinesis and Firehose answer 400 (what the Java SDK logs as "Status Code: 400;
    Error Code: InvalidSignatureException"), STS and SQS their Query-era codes with 403,
    Kinesis Video 403 (above)."""
    cases = [
        ("kinesis", lambda c: c.list_streams(), ("InvalidSignatureException", 400), ("UnrecognizedClientException", 400)),
        ("firehose", lambda c: c.list_delivery_streams(), ("InvalidSignatureException", 400),
         ("UnrecognizedClientException", 400)),
        ("sts", lambda c: c.get_caller_identity(), ("SignatureDoesNotMatch", 403), ("InvalidClientTokenId", 403)),
        ("sqs", lambda c: c.list_queues(), ("SignatureDoesNotMatch", 403), ("InvalidClientTokenId", 403)),
    ]
    for service, call, bad_signature, unknown_key in cases:
        with pytest.raises(ClientError) as e:
            call(signed_server.client(service, key=ACCESS_KEY, secret="not-the-secret"))
        assert code_status(e) == bad_signature, service
        with pytest.raises(ClientError) as e:
            call(signed_server.client(service, key="AKIDUNKNOWN", secret=SECRET_KEY))
        assert code_status(e) == unknown_key, service
        call(signed_server.client(service))
