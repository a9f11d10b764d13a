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


def producer_sdk_put_media(server, stream, body, key, secret, token=None, headers=None):
    """PutMedia as the KVS producer SDKs send it: SigV4 over the empty body's hash with
    no x-amz-content-sha256 header, the session token (if any) added after signing, the
    fragmented stream sent as the body. Returns (status, acknowledgement lines)."""
    import http.client
    import json
    from urllib.parse import urlparse
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    url = server.url + "/putMedia"
    headers = {"x-amzn-stream-name": stream, "x-amzn-fragment-timecode-type": "RELATIVE",
               "x-amzn-producer-start-timestamp": "1700000000.000", **(headers or {})}
    req = AWSRequest(method="POST", url=url, data=b"", headers=headers)
    botocore.auth.SigV4Auth(Credentials(key, secret), "kinesisvideo", "us-east-1").add_auth(req)
    sent = dict(req.headers.items())
    assert "X-Amz-Content-SHA256" not in sent and "x-amz-content-sha256" not in sent
    if token:
        sent["X-Amz-Security-Token"] = token
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", "/putMedia", body=body, headers=sent)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    return r.status, [json.loads(l) for l in text.splitlines() if l.strip().startswith("{")]


def test_put_media_signed_as_the_producer_sdks_sign_it(signed_server):
    signed_server.client("kinesisvideo").create_stream(StreamName="producer")
    body = (FIXTURES / "av.mp4").read_bytes()
    status, acks = producer_sdk_put_media(signed_server, "producer", body, ACCESS_KEY, SECRET_KEY)
    assert status == 200 and len([a for a in acks if a["EventType"] == "PERSISTED"]) == 4, acks
    status, acks = producer_sdk_put_media(signed_server, "producer", body, ACCESS_KEY, "wrong")
    assert status == 403 and not [a for a in acks if a.get("EventType") == "PERSISTED"]
    # Temporary credentials, their token added after signing (as the C producer does).
    creds = signed_server.client("sts").get_session_token()["Credentials"]
    status, acks = producer_sdk_put_media(signed_server, "producer", body, creds["AccessKeyId"],
                                          creds["SecretAccessKey"], token=creds["SessionToken"])
    assert status == 200 and len([a for a in acks if a["EventType"] == "PERSISTED"]) == 4, acks
