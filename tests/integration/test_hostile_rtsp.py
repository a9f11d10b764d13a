"""The RTSP port attacked: connection floods, sessions that go silent (TCP or UDP),
publications announcing more tracks than allowed, and a publisher that announces video
but floods audio only. Each is refused with RTSP's own status or cut off, counted in
/metrics, and the store keeps fragments within their limits."""

import socket
import time
import urllib.request

import pytest

from conftest import Server, closed_within
from test_rtsp import fragments, rtsp_ask

SPROP = "Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA"


@pytest.fixture
def limited(tmp_path):
    config = tmp_path / "kinescope.toml"
    config.write_text("[limits]\nrtsp_max_connections = 4\nrtsp_idle_timeout_secs = 2\n")
    s = Server(tmp_path / "data", extra_args=["--config", str(config)]).start()
    yield s
    s.stop()


def connect(server):
    host, port = server.rtsp_url.removeprefix("rtsp://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def refusals(server):
    with urllib.request.urlopen(server.url + "/metrics") as r:
        return {line.split("}")[0].split("reason=")[1].strip('"'): float(line.rsplit(" ", 1)[1])
                for line in r.read().decode().splitlines() if line.startswith('kinescope_refused_total{listener="rtsp"')}


def test_connections_over_the_cap_get_503(limited):
    held = [connect(limited) for _ in range(4)]
    try:
        time.sleep(0.3)
        with connect(limited) as extra:
            extra.settimeout(5)
            assert extra.recv(4096).startswith(b"RTSP/1.0 503")
    finally:
        for c in held:
            c.close()
    assert refusals(limited).get("connections", 0) >= 1


def test_silent_sessions_end_whether_tcp_or_udp(limited):
    limited.client("kinesisvideo").create_stream(StreamName="quiet")
    silent = connect(limited)
    # A UDP publisher that sets up, records, then sends nothing on any port.
    sdp = (f"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
           f"a=fmtp:96 packetization-mode=1; sprop-parameter-sets={SPROP}\r\na=control:streamid=0\r\n").encode()
    udp = connect(limited)
    url = f"{limited.rtsp_url}/quiet"
    assert rtsp_ask(udp, f"ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {len(sdp)}\r\n\r\n", sdp).startswith(
        b"RTSP/1.0 200")
    assert rtsp_ask(udp, f"SETUP {url}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\n"
                         "Transport: RTP/AVP;unicast;client_port=40000-40001;mode=record\r\n\r\n").startswith(
        b"RTSP/1.0 200")
    assert rtsp_ask(udp, f"RECORD {url} RTSP/1.0\r\nCSeq: 3\r\n\r\n").startswith(b"RTSP/1.0 200")
    assert closed_within(silent, 15), "a connection that never speaks"
    assert closed_within(udp, 15), "a UDP publication whose ports fell silent"
    assert refusals(limited).get("idle_timeout", 0) >= 2


def test_more_tracks_than_allowed_is_453(server):
    server.client("kinesisvideo").create_stream(StreamName="many")
    media = "".join(f"m=audio 0 RTP/AVP {96 + i % 32}\r\na=rtpmap:{96 + i % 32} opus/48000/2\r\na=control:streamid={i}\r\n"
                    for i in range(200))
    sdp = ("v=0\r\n" + media).encode()
    with connect(server) as c:
        url = f"{server.rtsp_url}/many"
        reply = rtsp_ask(c, f"ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {len(sdp)}\r\n\r\n", sdp)
    assert reply.startswith(b"RTSP/1.0 453"), reply[:200]


def test_audio_without_the_announced_video_is_still_cut_into_bounded_fragments(server):
    """A publisher announces H.264 and Opus, then sends 40 s of Opus only (as fast as it
    can): the fragments are cut by time, none longer than the muxer's 10 s."""
    server.client("kinesisvideo").create_stream(StreamName="noisy")
    sdp = (f"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
           f"a=fmtp:96 packetization-mode=1; sprop-parameter-sets={SPROP}\r\na=control:streamid=0\r\n"
           "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:streamid=1\r\n").encode()
    url = f"{server.rtsp_url}/noisy"
    with connect(server) as c:
        assert rtsp_ask(c, f"ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {len(sdp)}\r\n\r\n", sdp).startswith(
            b"RTSP/1.0 200")
        for i, ch in enumerate((0, 2)):
            assert rtsp_ask(c, f"SETUP {url}/streamid={i} RTSP/1.0\r\nCSeq: {2 + i}\r\n"
                               f"Transport: RTP/AVP/TCP;unicast;interleaved={ch}-{ch + 1};mode=record\r\n\r\n").startswith(
                b"RTSP/1.0 200")
        assert rtsp_ask(c, f"RECORD {url} RTSP/1.0\r\nCSeq: 4\r\n\r\n").startswith(b"RTSP/1.0 200")
        packets = []
        for n in range(2000):  # 20 ms each: 40 s of audio
            rtp = bytes([0x80, 97]) + n.to_bytes(2, "big") + (n * 960).to_bytes(4, "big") + b"\x12\x34\x56\x78"
            rtp += b"\xfc" + bytes(60)
            packets.append(b"$\x02" + len(rtp).to_bytes(2, "big") + rtp)
        c.sendall(b"".join(packets))
        assert rtsp_ask(c, f"TEARDOWN {url} RTSP/1.0\r\nCSeq: 5\r\n\r\n").startswith(b"RTSP/1.0 200")
    frags = fragments(server, "noisy", want=4)
    assert len(frags) >= 4, frags
    assert all(f["FragmentLengthInMilliseconds"] <= 10_100 for f in frags), [f["FragmentLengthInMilliseconds"] for f in frags]
