"""HTTP/2 on the API port, beside HTTP/1.1: the way the AWS SDK for JavaScript v3 and
the Java SDK's async client talk to Kinesis, and the known HTTP/2 attacks, each bounded
(memory read from /proc) while a signed client keeps being served.

Raw frames come from the `h2` package (hyper-h2), which lets a test send what a real
client never would: reset floods, endless CONTINUATION frames, SETTINGS and PING floods.
"""

import socket
import ssl
import subprocess
import time

import h2.config
import h2.errors
import h2.connection
import h2.events
import h2.exceptions
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

from conftest import ACCESS_KEY, SECRET_KEY, Server, free_port, java_sdk_jars, run_js, wait_for


def rss_kb(server):
    with open(f"/proc/{server.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def curl(*args):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout, out.stderr


def signed_curl(server, target, body="{}", extra=(), url=None):
    """A Kinesis JSON call signed by curl's own SigV4 (`--aws-sigv4`)."""
    return curl(
        *extra,
        "--aws-sigv4", "aws:amz:us-east-1:kinesis", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
        "-H", f"X-Amz-Target: {target}", "-H", "Content-Type: application/x-amz-json-1.1",
        "-w", "\n%{http_version} %{http_code}", "--data", body, (url or server.url) + "/",
    )


@pytest.fixture
def signed(signed_server):
    return signed_server


def test_h2c_with_prior_knowledge_serves_signed_calls_and_http1_still_works(signed):
    code, out, err = signed_curl(signed, "Kinesis_20131202.CreateStream", '{"StreamName":"h2","ShardCount":1}',
                                 extra=("--http2-prior-knowledge",))
    assert code == 0, err
    assert out.endswith("2 200"), out
    code, out, err = signed_curl(signed, "Kinesis_20131202.ListStreams", extra=("--http2-prior-knowledge",))
    assert code == 0 and '"h2"' in out and out.endswith("2 200"), (out, err)
    # The same port answers HTTP/1.1 as before.
    code, out, _ = signed_curl(signed, "Kinesis_20131202.ListStreams", extra=("--http1.1",))
    assert out.endswith("1.1 200") and '"h2"' in out, out
    # A bad signature over HTTP/2 gets the service's error, as over HTTP/1.1.
    code, out, _ = curl("--http2-prior-knowledge", "-H", "X-Amz-Target: Kinesis_20131202.ListStreams",
                        "-H", "Content-Type: application/x-amz-json-1.1", "-w", "\n%{http_version} %{http_code}",
                        "--data", "{}", signed.url + "/")
    assert "MissingAuthenticationToken" in out and out.endswith("2 400"), out


def test_https_offers_h2_by_alpn_and_takes_http2_without_it(tmp_path):
    s = Server(tmp_path / "data", keys=(ACCESS_KEY, SECRET_KEY), extra_args=["--https", f"127.0.0.1:{free_port()}"]).start()
    try:
        url = s.https_url
        code, out, err = signed_curl(s, "Kinesis_20131202.ListStreams", extra=("--http2", "-k"), url=url)
        assert code == 0 and out.endswith("2 200"), (out, err)
        # No ALPN at all, HTTP/2 at once (what Netty does by default for the Java SDK).
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port))) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.selected_alpn_protocol() is None
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                conn.send_headers(1, [(":method", "GET"), (":path", "/health"), (":scheme", "https"),
                                      (":authority", "localhost")], end_stream=True)
                tls.sendall(conn.data_to_send())
                status = read_status(conn, tls, 1)
                assert status == "200"
    finally:
        s.stop()


def read_status(conn, sock, stream_id, timeout=10):
    """Reads frames until `stream_id`'s response headers; returns its :status."""
    sock.settimeout(timeout)
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = sock.recv(65536)
        if not data:
            raise AssertionError("the connection closed")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                return dict(event.headers)[b":status"].decode()
        if out := conn.data_to_send():
            sock.sendall(out)
    raise AssertionError("no response")


def h2_socket(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def served(server):
    """A signed HTTP/2 call still answers."""
    code, out, _ = signed_curl(server, "Kinesis_20131202.ListStreams", extra=("--http2-prior-knowledge",))
    return code == 0 and out.endswith("2 200")


def drain(sock, seconds=0.5):
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except (socket.timeout, OSError):
        pass


def test_rapid_reset_is_bounded_and_others_are_still_served(signed):
    before = rss_kb(signed)
    sock, conn = h2_socket(signed)
    sent = 0
    try:
        for i in range(20_000):
            sid = 1 + 2 * i
            conn.send_headers(sid, [(":method", "POST"), (":path", "/"), (":scheme", "http"),
                                    (":authority", "127.0.0.1"), ("x-amz-target", "Kinesis_20131202.ListStreams")])
            conn.reset_stream(sid)
            sent += 1
            if i % 500 == 0:
                sock.sendall(conn.data_to_send())
        sock.sendall(conn.data_to_send())
    except (BrokenPipeError, ConnectionResetError):
        pass
    events = []
    sock.settimeout(2)
    try:
        while data := sock.recv(65536):
            events += conn.receive_data(data)
    except (socket.timeout, OSError, h2.exceptions.ProtocolError):
        pass
    sock.close()
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, (sent, events[-3:])
    assert sent < 20_000, "the flood was cut off, not absorbed"
    assert served(signed)
    assert rss_kb(signed) - before < 50_000, "reset streams cost no lasting memory"


def test_continuation_flood_is_a_protocol_error_not_memory(signed):
    before = rss_kb(signed)
    sock, conn = h2_socket(signed)
    block = conn.encoder.encode([(":method", "POST"), (":path", "/"), (":scheme", "http"),
                                 (":authority", "127.0.0.1")])
    head = HeadersFrame(1)
    head.data = block
    sock.sendall(head.serialize())
    cut = False
    try:
        for _ in range(5_000):
            c = ContinuationFrame(1)
            c.data = b"\x40\x05x-pad\x7f" + b"\xff" * 16_000  # header field after field, never ended
            sock.sendall(c.serialize())
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    drain(sock)
    sock.close()
    assert cut, "the server stops reading endless CONTINUATION frames"
    assert served(signed)
    assert rss_kb(signed) - before < 50_000


def test_settings_and_ping_floods_cost_one_answer_each(signed):
    before = rss_kb(signed)
    sock, conn = h2_socket(signed)
    sock.settimeout(0.001)
    sent = 0
    try:
        # Never reads the answers: the server stops reading once its writes back up, and
        # the write timeout drops the connection.
        for i in range(200_000):
            frame = SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100}) if i % 2 \
                else PingFrame(0, opaque_data=i.to_bytes(8, "big"))
            sock.setblocking(True)
            sock.settimeout(5)
            sock.sendall(frame.serialize())
            sent += 1
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        pass
    assert rss_kb(signed) - before < 50_000, f"{sent} SETTINGS/PING frames unanswered"
    assert served(signed)
    sock.close()


def test_streams_past_the_limit_are_refused(signed):
    sock, conn = h2_socket(signed)
    sock.settimeout(5)
    # The server's SETTINGS say how many streams it takes at once.
    wait_for(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in conn.receive_data(sock.recv(65536))),
             what="the server's SETTINGS")
    assert conn.remote_settings.max_concurrent_streams == 100
    assert conn.remote_settings.max_header_list_size == 65536
    sock.close()
    assert served(signed)


def h2_connections(server, listener="http"):
    import urllib.request
    with urllib.request.urlopen(server.url + "/metrics") as r:
        text = r.read().decode()
    line = f'kinescope_http_connections_total{{listener="{listener}",protocol="h2"}} '
    return next((int(float(l.split()[-1])) for l in text.splitlines() if l.startswith(line)), 0)


def test_the_js_sdk_v3_kinesis_client_with_its_defaults(signed):
    """@aws-sdk/client-kinesis speaks HTTP/2 by default (NodeHttp2Handler): every call,
    SubscribeToShard's event stream included, with nothing but an endpoint override."""
    import json
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    p = subprocess.run(["node", str(root / "web" / "tests" / "kinesis_sdk.mjs"), signed.url, "us-east-1",
                        ACCESS_KEY, SECRET_KEY], capture_output=True, text=True, timeout=120, cwd=root / "web",
                       env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    assert seen.get("ok"), seen
    assert seen["handler"] == "NodeHttp2Handler", seen
    assert seen["records"] == ["hello"] and seen["subscribed"] == ["hello"], seen
    assert h2_connections(signed) >= 1


def test_the_java_sdk_async_client_with_its_defaults(signed, tmp_path):
    """KinesisAsyncClient (Netty, HTTP/2, as the Kinesis Client Library uses it): every
    call and SubscribeToShard's event stream over HTTP/2, only the endpoint overridden."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    cp = f"{tmp_path}:{java_sdk_jars()}/*"
    subprocess.run(["javac", "-d", str(tmp_path), "-cp", cp, str(root / "tests" / "java" / "KinesisSdk.java")],
                   check=True, timeout=180)
    before = h2_connections(signed)
    p = subprocess.run(["java", "-cp", cp, "KinesisSdk", signed.url, "us-east-1", ACCESS_KEY, SECRET_KEY],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    line = p.stdout.strip().splitlines()[-1]
    assert "ok=true" in line and "records=1:hello" in line and "subscribed=hello" in line, (line, p.stderr[-3000:])
    assert h2_connections(signed) > before, "the SDK spoke HTTP/2"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_js_sdk_v3_clients_of_sts_sqs_firehose_and_kinesis_video_with_their_defaults(tmp_path, scheme):
    """STS, SQS, Firehose and Kinesis Video clients with their defaults (HTTP/1.1 handlers,
    as the SDK ships them): role credentials from AssumeRole sign the SQS calls. Over
    https the Kinesis client (HTTP/2 by ALPN) runs too."""
    extra = ["--https", f"127.0.0.1:{free_port()}"] if scheme == "https" else []
    s = Server(tmp_path / "data", keys=(ACCESS_KEY, SECRET_KEY), extra_args=extra).start()
    try:
        url = s.https_url if scheme == "https" else s.url
        env = {"NODE_EXTRA_CA_CERTS": str(tmp_path / "data" / "tls" / "cert.pem")} if scheme == "https" else {}
        seen = run_js("sdk_services.mjs", url, env)
        assert seen.get("ok"), seen
        assert seen["sessionKey"] == "ASIA" and seen["roleArn"].endswith(":assumed-role/js-sdk/js"), seen
        assert seen["messages"] == ["hello"] and seen["firehoseFailed"] == 0, seen
        assert seen["videoStatus"] == "ACTIVE" and seen["firehoseStatus"] == "ACTIVE", seen
        assert set(seen["handlers"].values()) == {"NodeHttpHandler"}, seen
        if scheme == "https":
            kinesis = run_js("kinesis_sdk.mjs", url, env)
            assert kinesis.get("ok") and kinesis["handler"] == "NodeHttp2Handler", kinesis
            assert kinesis["subscribed"] == ["hello"], kinesis
            assert h2_connections(s, listener="https") >= 1
    finally:
        s.stop()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_java_sdk_sync_clients_assume_a_role_and_use_it(tmp_path, scheme):
    """StsClient and KinesisClient (sync, Apache HTTP client, CBOR) with their defaults:
    StsAssumeRoleCredentialsProvider's temporary credentials sign the Kinesis calls."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    classes = tmp_path / "classes"
    classes.mkdir()
    cp = f"{classes}:{java_sdk_jars()}/*"
    subprocess.run(["javac", "-d", str(classes), "-cp", cp, str(root / "tests" / "java" / "SyncSdk.java")],
                   check=True, timeout=180)
    extra = ["--https", f"127.0.0.1:{free_port()}"] if scheme == "https" else []
    s = Server(tmp_path / "data", keys=(ACCESS_KEY, SECRET_KEY), extra_args=extra).start()
    try:
        url = s.https_url if scheme == "https" else s.url
        args = ["java", "-cp", cp, "SyncSdk", url, "us-east-1", ACCESS_KEY, SECRET_KEY]
        p = subprocess.run(args + (["trust-all"] if scheme == "https" else []), capture_output=True, text=True,
                           timeout=180)
        assert p.returncode == 0, p.stderr[-3000:]
        line = p.stdout.strip().splitlines()[-1]
        assert "ok=true" in line and "session=ASIA" in line and "records=1:sync" in line, (line, p.stderr[-3000:])
    finally:
        s.stop()
