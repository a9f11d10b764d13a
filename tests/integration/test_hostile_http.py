"""The HTTP port attacked as a script on this machine would: forged metric labels,
unsigned bodies, half-sent headers and bodies, connection floods, and the CSRF and DNS
rebinding a web page can try against the anonymous loopback default. Every attack
must be refused with the protocol's error, cost bounded memory, and leave the server
answering everyone else."""

import json
import socket
import time
import subprocess
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, BIN, SECRET_KEY, Server, closed_within


def rss_kb(server):
    with open(f"/proc/{server.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def raw(server, data, read=True, wait=10):
    """Sends raw bytes; returns what the server answered before closing (or `wait` s)."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(data)
        if not read:
            return b""
        s.settimeout(wait)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
        return out


@pytest.fixture
def limited(tmp_path):
    config = tmp_path / "kinescope.toml"
    config.write_text(
        "[limits]\nhttp_max_connections = 8\nhttp_header_timeout_secs = 2\n"
        "http_body_idle_timeout_secs = 2\nhttp_write_timeout_secs = 2\n"
    )
    s = Server(tmp_path / "data", extra_args=["--config", str(config)]).start()
    yield s
    s.stop()


def metrics_text(server):
    with urllib.request.urlopen(server.url + "/metrics") as r:
        return r.read().decode()


def test_request_text_never_becomes_a_metric_label_and_costs_no_memory(server):
    server.client("sqs").list_queues()
    before = rss_kb(server)
    forged = 'x.evil",status="200"} 1e9 #'
    for i in range(2000):
        target = forged if i == 0 else f"Svc_{i}.{'A' * 30_000}"
        body = b"{}"
        head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {target}\r\n"
                f"Content-Type: application/x-amz-json-1.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        answer = raw(server, head.encode() + body)
        assert b" 404 " in answer.split(b"\r\n", 1)[0], answer[:200]
    text = metrics_text(server)
    assert "evil" not in text and "1e9" not in text
    assert 'kinescope_requests_total{api="unknown",status="404"} 2000' in text
    assert len(text) < 20_000, "the scrape stays small"
    assert rss_kb(server) - before < 30_000, "2,000 unique 30 KB targets cost no lasting memory"


def signed_status(server, service, target, unsigned_payload=False):
    """A JSON request to `target` signed for `service` with botocore's own signer."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
    if unsigned_payload:
        headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    req = AWSRequest(method="POST", url=server.url + "/", data=b"{}", headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), service, "us-east-1").add_auth(req)
    r = urllib.request.Request(server.url + "/", data=b"{}", headers=dict(req.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_unsigned_body_is_refused_before_it_is_read(data_dir):
    s = Server(data_dir, keys=(ACCESS_KEY, SECRET_KEY)).start()
    try:
        # Claims 16 MiB and sends none of it: the refusal comes on the headers alone.
        head = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.ListQueues\r\n"
                b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: 16777215\r\n\r\n")
        answer = raw(s, head, wait=10)
        status, rest = answer.split(b"\r\n", 1)
        assert b" 403 " in status, answer[:300]
        assert b"MissingAuthenticationToken" in rest
        # 40 such connections held open cost no body memory.
        before = rss_kb(s)
        socks = []
        for _ in range(40):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(head + b"\0" * 1_000_000)
            socks.append(c)
        time.sleep(1)
        assert rss_kb(s) - before < 50_000, "unsigned bodies are not buffered"
        for c in socks:
            c.close()
        # A body signed UNSIGNED-PAYLOAD is accepted on PutMedia only, and a credential
        # must be scoped to the service of the operation.
        assert signed_status(s, "sqs", "AmazonSQS.ListQueues", unsigned_payload=True)[0] == 403
        status, answer = signed_status(s, "sqs", "Kinesis_20131202.ListStreams")
        assert status == 403 and "scoped to correct service" in answer["message"], answer
        assert signed_status(s, "kinesis", "Kinesis_20131202.ListStreams")[0] == 200
        assert s.client("sqs").list_queues().get("QueueUrls", []) == []
    finally:
        s.stop()


def test_half_sent_headers_and_bodies_are_cut_off(limited):
    # Headers that never end.
    slow = socket.create_connection(("127.0.0.1", limited.port))
    slow.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    # A body that stops half way.
    body = socket.create_connection(("127.0.0.1", limited.port))
    body.sendall(b"POST /createStream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"StreamName\":")
    # A keep-alive connection left idle after a request.
    idle = socket.create_connection(("127.0.0.1", limited.port))
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    idle.settimeout(5)
    assert b"200 OK" in idle.recv(4096)
    assert closed_within(slow, 15), "half-sent headers"
    assert closed_within(body, 15), "half-sent body"
    assert closed_within(idle, 15), "idle keep-alive"
    text = metrics_text(limited)
    assert 'kinescope_refused_total{listener="http",reason="body_timeout"}' in text
    limited.client("kinesisvideo").create_stream(StreamName="still-answering")


def hold_silent_connections(server, n, within=10):
    """`n` connections the server accepted and holds. A connection opened while an earlier
    one (the fixture's health check, say) still held its slot is refused with 503 and
    closed: those are replaced until `n` silent ones hold every slot."""
    held = []
    deadline = time.time() + within
    while time.time() < deadline:
        while len(held) < n:
            held.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.3)
        alive = []
        for c in held:
            c.setblocking(False)
            try:
                c.recv(1, socket.MSG_PEEK)
                c.close()  # answered (503) or closed: not holding a slot
            except BlockingIOError:
                alive.append(c)
        held = alive
        if len(held) == n:
            return held
    raise AssertionError(f"could not hold {n} connections")


def test_connections_over_the_cap_get_503_and_others_are_served_after(limited):
    held = hold_silent_connections(limited, 8)
    try:
        answer = raw(limited, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, rest = answer.split(b"\r\n", 1)
        assert b" 503 " in status, answer[:300]
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["__type"] == "ServiceUnavailableException"
    finally:
        for c in held:
            c.close()
    time.sleep(0.5)
    assert limited.client("sqs").list_queues().get("QueueUrls", []) == []
    assert 'kinescope_refused_total{listener="http",reason="connections"}' in metrics_text(limited)


def test_anonymous_mode_refuses_other_sites_pages_and_rebound_names(server):
    form = b"Action=CreateQueue&QueueName=csrf&Version=2012-11-05"
    csrf = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nOrigin: https://evil.example\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\nConnection: close\r\n\r\n")
    answer = raw(server, csrf.encode() + form)
    assert b" 403 " in answer.split(b"\r\n", 1)[0] and b"AccessDenied" in answer, answer[:400]
    rebound = (f"POST / HTTP/1.1\r\nHost: evil.example:{server.port}\r\n"
               f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\nConnection: close\r\n\r\n")
    assert b" 403 " in raw(server, rebound.encode() + form).split(b"\r\n", 1)[0]
    body = b'{"StreamName":"csrf"}'
    text_plain = (f"POST /createStream HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nOrigin: http://evil.example\r\n"
                  f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    assert b" 403 " in raw(server, text_plain.encode() + body).split(b"\r\n", 1)[0]
    # Nothing was created, and the server's own page and local clients still work.
    assert server.client("sqs").list_queues().get("QueueUrls", []) == []
    assert server.client("kinesisvideo").list_streams()["StreamInfoList"] == []
    own = (f"POST /listStreams HTTP/1.1\r\nHost: localhost:{server.port}\r\nOrigin: http://localhost:{server.port}\r\n"
           f"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
    assert b" 200 " in raw(server, own.encode()).split(b"\r\n", 1)[0]


def test_anonymous_rtsp_on_a_network_address_is_refused(data_dir):
    p = subprocess.run([BIN, "serve", "--data-dir", str(data_dir), "--http", "127.0.0.1:0", "--rtsp", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "refusing to listen for RTSP" in p.stderr, p.stderr
