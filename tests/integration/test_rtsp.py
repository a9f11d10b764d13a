"""RTSP publishers (ffmpeg, GStreamer) pushing into streams, read back with boto3 and ffprobe."""
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import FIXTURES, Server, ffprobe, fragment_metadata, free_port


def push(url, fixture="av.mp4", transport="tcp", timeout=60, check=True, extra=()):
    p = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(FIXTURES / fixture),
                        *extra, "-c", "copy", "-f", "rtsp", "-rtsp_transport", transport, url],
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def fragments(s, name, want=None, timeout=15):
    archived = s.client("kinesis-video-archived-media", accept="video/mp4")
    deadline = time.time() + timeout
    while True:
        fr = archived.list_fragments(StreamName=name, FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": time.time() - 3600, "EndTimestamp": time.time() + 60}})["Fragments"]
        fr.sort(key=lambda f: int(f["FragmentNumber"]))
        if want is None or len(fr) >= want or time.time() > deadline:
            return fr
        time.sleep(0.2)


def read_back(s, name, frags, tmp_path):
    body = s.client("kinesis-video-archived-media", accept="video/mp4").get_media_for_fragment_list(
        StreamName=name, Fragments=[f["FragmentNumber"] for f in frags])["Payload"].read()
    out = tmp_path / f"{name}.mp4"
    out.write_bytes(body)
    return out


def probe_frames(path):
    p = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                        "stream=codec_name,width,height,nb_read_frames,sample_rate,channels", "-of", "json", str(path)],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)["streams"]


def decode_clean(path):
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    return p.returncode == 0 and not p.stderr.strip()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffmpeg_push_h264_aac(server, transport, tmp_path):
    name = f"lobby-{transport}"
    server.client("kinesisvideo").create_stream(StreamName=name)
    push(f"{server.rtsp_url}/{name}", transport=transport)
    frags = fragments(server, name, want=4)
    # The fixture is 4 s of 25 fps H.264 with a 1 s GOP, plus AAC.
    assert len(frags) == 4, frags
    assert all(abs(f["FragmentLengthInMilliseconds"] - 1000) <= 40 for f in frags)
    out = read_back(server, name, frags, tmp_path)
    streams = probe_frames(out)
    video = next(s for s in streams if s["codec_name"] == "h264")
    audio = next(s for s in streams if s["codec_name"] == "aac")
    assert (video["width"], video["height"]) == (320, 240)
    assert abs(int(video["nb_read_frames"]) - 100) <= 25, video  # ± one GOP
    assert int(audio["sample_rate"]) == 48000 and int(audio["nb_read_frames"]) > 100
    assert decode_clean(out)
    # Counted in /metrics.
    with urllib.request.urlopen(f"{server.url}/metrics") as r:
        metrics = dict(line.rsplit(" ", 1) for line in r.read().decode().splitlines() if line and not line.startswith("#"))
    assert int(metrics["kinescope_rtsp_packets_total"]) >= 100
    assert int(metrics["kinescope_fragments_persisted_total"]) >= 4
    assert int(metrics["kinescope_rtsp_packets_lost_total"]) == 0
    # Producer times are wall-clock, a second apart.
    ts = [f["ProducerTimestamp"].timestamp() for f in frags]
    assert all(abs((b - a) - 1.0) < 0.05 for a, b in zip(ts, ts[1:]))
    assert abs(ts[0] - time.time()) < 60
    # The returned MP4's timeline starts near zero (not at 1970) and lasts what the
    # fragments last; the metadata boxes keep the real producer timestamps.
    fmt = ffprobe(out)["format"]
    assert 3.5 <= float(fmt["duration"]) <= 4.5, fmt
    p = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=start_time", "-of", "json", str(out)],
                       capture_output=True, text=True, check=True)
    assert 0 <= float(json.loads(p.stdout)["format"]["start_time"]) < 1.0, p.stdout
    meta = fragment_metadata(out.read_bytes())
    assert [round(float(m["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"]), 3) for m in meta] == [round(t, 3) for t in ts]


def test_ffmpeg_push_h265(server, tmp_path):
    server.client("kinesisvideo").create_stream(StreamName="hevc")
    push(f"{server.rtsp_url}/hevc", fixture="hevc.mp4")
    frags = fragments(server, "hevc", want=2)
    assert len(frags) >= 2
    streams = probe_frames(read_back(server, "hevc", frags, tmp_path))
    assert streams[0]["codec_name"] == "hevc" and streams[0]["width"] > 0


def test_unknown_stream_is_404_unless_creation_is_on(data_dir, tmp_path):
    s = Server(data_dir).start()
    try:
        p = push(f"{s.rtsp_url}/nowhere", check=False)
        assert p.returncode != 0 and "404" in p.stderr
    finally:
        s.stop()
    s = Server(data_dir, extra_args=["--rtsp-create-streams"]).start()
    try:
        push(f"{s.rtsp_url}/made-on-push")
        assert fragments(s, "made-on-push", want=4)
        desc = s.client("kinesisvideo").describe_stream(StreamName="made-on-push")["StreamInfo"]
        assert desc["Status"] == "ACTIVE"
    finally:
        s.stop()


def test_digest_authentication(data_dir):
    s = Server(data_dir, keys=("AKIDRTSP", "rtsp-secret")).start()
    try:
        s.client("kinesisvideo").create_stream(StreamName="secure")
        host = s.rtsp_url.removeprefix("rtsp://")
        p = push(f"rtsp://{host}/secure", check=False)
        assert p.returncode != 0 and "401" in p.stderr
        p = push(f"rtsp://AKIDRTSP:wrong@{host}/secure", check=False)
        assert p.returncode != 0
        push(f"rtsp://AKIDRTSP:rtsp-secret@{host}/secure")
        assert len(fragments(s, "secure", want=4)) == 4
    finally:
        s.stop()


def rtsp_ask(c, text, body=b""):
    """Sends one RTSP request on an open socket and returns the reply's head."""
    c.sendall(text.encode() + body)
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += c.recv(4096)
    return reply


def rtsp_exchange(url, data, read=True):
    host, port = url.removeprefix("rtsp://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as c:
        c.sendall(data)
        if not read:
            return b""
        out = b""
        try:
            while b"\r\n\r\n" not in out:
                chunk = c.recv(4096)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        return out


def test_bad_input_gets_rtsp_errors_and_leaves_others_alone(server, tmp_path):
    server.client("kinesisvideo").create_stream(StreamName="steady")
    assert rtsp_exchange(server.rtsp_url, b"HELLO THERE\r\n\r\n").startswith(b"RTSP/1.0 400")
    sdp = b"v=0\r\nm=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ann = (f"ANNOUNCE {server.rtsp_url}/steady RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n"
           f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp
    assert rtsp_exchange(server.rtsp_url, ann).startswith(b"RTSP/1.0 415")
    setup = f"SETUP {server.rtsp_url}/steady/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;interleaved=0-1;mode=record\r\n\r\n"
    assert rtsp_exchange(server.rtsp_url, setup.encode()).startswith(b"RTSP/1.0 455")
    # A recording session fed garbage RTP and huge sequence jumps: counted, not fatal.
    h264_sdp = (b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                b"a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA\r\n"
                b"a=control:streamid=0\r\n")
    host, port = server.rtsp_url.removeprefix("rtsp://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as c:
        def ask(text, body=b""):
            return rtsp_ask(c, text, body)
        assert ask(f"ANNOUNCE {server.rtsp_url}/steady RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {len(h264_sdp)}\r\n\r\n",
                   h264_sdp).startswith(b"RTSP/1.0 200")
        assert ask(f"SETUP {server.rtsp_url}/steady/streamid=0 RTSP/1.0\r\nCSeq: 2\r\n"
                   "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n").startswith(b"RTSP/1.0 200")
        assert ask(f"RECORD {server.rtsp_url}/steady RTSP/1.0\r\nCSeq: 3\r\n\r\n").startswith(b"RTSP/1.0 200")
        junk = [b"\x00" * 20, b"\x80\x60\x00\x01" + b"\xff" * 30, b"\x80\xe0\xff\xf0" + bytes(8) + b"\x7c\x05garbage",
                b"\x80\xe0\x00\x10" + bytes(8) + b"\x18\x00\x50\x67"]
        for j in junk:
            c.sendall(b"$\x00" + len(j).to_bytes(2, "big") + j)
        assert ask(f"TEARDOWN {server.rtsp_url}/steady RTSP/1.0\r\nCSeq: 4\r\n\r\n").startswith(b"RTSP/1.0 200")
    assert fragments(server, "steady") == []
    # A publisher that vanishes mid-stream (killed, no TEARDOWN) keeps what it sent.
    proc = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                             str(FIXTURES / "av.mp4"), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
                             f"{server.rtsp_url}/steady"])
    time.sleep(3.5)
    proc.kill()
    proc.wait()
    before = fragments(server, "steady", want=2)
    assert len(before) >= 2
    push(f"{server.rtsp_url}/steady")
    after = fragments(server, "steady", want=len(before) + 4)
    assert [f["FragmentNumber"] for f in after[:len(before)]] == [f["FragmentNumber"] for f in before]
    out = read_back(server, "steady", after, tmp_path)
    assert decode_clean(out)


@pytest.mark.skipif(not shutil.which("gst-launch-1.0"), reason="GStreamer is not installed")
def test_gstreamer_rtspclientsink(server, tmp_path):
    check = subprocess.run(["gst-inspect-1.0", "rtspclientsink"], capture_output=True)
    if check.returncode != 0:
        pytest.skip("rtspclientsink is not installed")
    server.client("kinesisvideo").create_stream(StreamName="gst")
    args = ["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=75", "is-live=true", "!",
            "video/x-raw,width=320,height=240,framerate=25/1", "!", "x264enc", "tune=zerolatency",
            "key-int-max=25", "!", "h264parse", "!", "rtspclientsink", f"location={server.rtsp_url}/gst"]
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
    except subprocess.TimeoutExpired:
        # Under CPU load, about one run in eight, gst-launch sends every packet and its
        # RTCP BYE and then never finishes its EOS (its rtpbin, not the server: the
        # server's log shows all 75 frames received and no request pending; reproduced
        # with GST_DEBUG=rtspclientsink:6, 2026-11-30). What the server recorded is
        # checked below either way.
        print("gst-launch did not exit after EOS; checking the recording")
    frags = fragments(server, "gst", want=2)
    assert len(frags) >= 2
    streams = probe_frames(read_back(server, "gst", frags, tmp_path))
    assert streams[0]["codec_name"] == "h264" and int(streams[0]["nb_read_frames"]) >= 50


HAVE_GST_PY = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                             capture_output=True).returncode == 0


class Camera:
    """The fake IP camera (GStreamer's RTSP server) on a port of our choosing."""

    def __init__(self, port, path, creds=()):
        self.args = ["/usr/bin/python3", str(Path(__file__).parent / "fake_camera.py"), str(port), path, *creds]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()


def source(s, name, method="GET", body=None):
    req = urllib.request.Request(f"{s.url}/v1/streams/{name}/source", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_until(pred, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    return pred()


@pytest.mark.skipif(not HAVE_GST_PY, reason="GStreamer's RTSP server for Python is not installed")
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_pull_from_a_camera_and_resume_after_it_restarts(server, transport, tmp_path):
    port = free_port()
    cam = Camera(port, "live").start()
    try:
        server.client("kinesisvideo").create_stream(StreamName="door")
        status, body = source(server, "door", "PUT", {"url": f"rtsp://127.0.0.1:{port}/live", "transport": transport})
        assert status == 200, body
        assert wait_until(lambda: source(server, "door")[1]["status"]["connected"])
        first = wait_until(lambda: len(fragments(server, "door")) >= 2 and fragments(server, "door"))
        assert first
        cam.stop()
        st = wait_until(lambda: not source(server, "door")[1]["status"]["connected"] and source(server, "door")[1])
        assert st and st["status"]["last_error"]
        cam = Camera(port, "live").start()
        assert wait_until(lambda: source(server, "door")[1]["status"]["connected"], timeout=40)
        n = len(fragments(server, "door"))
        assert wait_until(lambda: len(fragments(server, "door")) >= n + 2, timeout=20), "recording did not resume"
        frags = fragments(server, "door")
        streams = probe_frames(read_back(server, "door", frags, tmp_path))
        assert streams[0]["codec_name"] == "h264" and streams[0]["width"] == 320
        # Listed with the stream; removing it stops the pull.
        with urllib.request.urlopen(f"{server.url}/v1/streams") as r:
            listed = {s["StreamName"]: s for s in json.loads(r.read())["Streams"]}
        assert listed["door"]["Source"]["url"] == f"rtsp://127.0.0.1:{port}/live"
        assert source(server, "door", "DELETE")[0] == 200
        assert source(server, "door")[0] == 404
    finally:
        cam.stop()


@pytest.mark.skipif(not HAVE_GST_PY, reason="GStreamer's RTSP server for Python is not installed")
def test_pull_with_credentials_never_shows_them(server):
    port = free_port()
    cam = Camera(port, "private", ("viewer", "s3cret-pass")).start()
    try:
        server.client("kinesisvideo").create_stream(StreamName="vault")
        status, body = source(server, "vault", "PUT", {"url": f"rtsp://viewer:wrong@127.0.0.1:{port}/private"})
        assert status == 200 and "wrong" not in json.dumps(body)
        st = wait_until(lambda: source(server, "vault")[1]["status"]["last_error"] and source(server, "vault")[1])
        assert st, "the wrong password was never reported"
        assert "401" in st["status"]["last_error"] or "Unauthorized" in st["status"]["last_error"]
        status, body = source(server, "vault", "PUT", {"url": f"rtsp://127.0.0.1:{port}/private",
                                                        "username": "viewer", "password": "s3cret-pass"})
        assert status == 200 and body["authenticated"] is True
        assert wait_until(lambda: len(fragments(server, "vault")) >= 2)
        blob = json.dumps(source(server, "vault")[1]) + "".join(server.log)
        assert "s3cret-pass" not in blob and "wrong" not in "".join(server.log)
        assert source(server, "nope", "PUT", {"url": f"rtsp://127.0.0.1:{port}/private"})[0] == 404
        assert source(server, "vault", "PUT", {"url": "http://example.com/x"})[0] == 400
    finally:
        cam.stop()


def test_rtsp_play_restreams_a_live_stream(server, tmp_path):
    server.client("kinesisvideo").create_stream(StreamName="restream")
    server.client("kinesisvideo").create_stream(StreamName="empty")
    pusher = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                               str(FIXTURES / "av.mp4"), "-c", "copy", "-f", "rtsp", f"{server.rtsp_url}/restream"])
    try:
        assert wait_until(lambda: len(fragments(server, "restream")) >= 1)
        p = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,sample_rate",
                            "-of", "json", f"{server.rtsp_url}/restream"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        streams = json.loads(p.stdout)["streams"]
        assert {s["codec_name"] for s in streams} == {"h264", "aac"}
        assert next(s for s in streams if s["codec_name"] == "h264")["width"] == 320
        out = tmp_path / "restream.mp4"
        p = subprocess.run(["ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", f"{server.rtsp_url}/restream",
                            "-t", "3", "-c", "copy", "-y", str(out)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        frames = probe_frames(out)
        assert int(next(s for s in frames if s["codec_name"] == "h264")["nb_read_frames"]) >= 50
        assert decode_clean(out)
    finally:
        pusher.kill()
        pusher.wait()
    for name, status in [("nowhere", b"404"), ("empty", b"404")]:
        reply = rtsp_exchange(server.rtsp_url, f"DESCRIBE {server.rtsp_url}/{name} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        assert reply.startswith(b"RTSP/1.0 " + status), reply


def test_sender_reports_put_fragments_on_the_producers_clock(server):
    """A publisher whose RTCP sender report says its clock is an hour behind ours: the
    fragments carry the publisher's time, not the arrival time."""
    import struct
    server.client("kinesisvideo").create_stream(StreamName="ntp")
    sdp = (b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
           b"a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqyyAUBf8uAiAAADAAIAAAMAZR4sXJA=,aOvDyyLA\r\n"
           b"a=control:streamid=0\r\n")
    url = server.rtsp_url
    host, port = url.removeprefix("rtsp://").split(":")
    producer_time = time.time() - 3600
    with socket.create_connection((host, int(port)), timeout=5) as c:
        def ask(text, body=b""):
            return rtsp_ask(c, text, body)
        assert ask(f"ANNOUNCE {url}/ntp RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {len(sdp)}\r\n\r\n", sdp).startswith(b"RTSP/1.0 200")
        assert ask(f"SETUP {url}/ntp/streamid=0 RTSP/1.0\r\nCSeq: 2\r\n"
                   "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n").startswith(b"RTSP/1.0 200")
        assert ask(f"RECORD {url}/ntp RTSP/1.0\r\nCSeq: 3\r\n\r\n").startswith(b"RTSP/1.0 200")
        secs = int(producer_time)
        frac = int((producer_time - secs) * 2**32)
        sr = struct.pack(">BBHIIIIII", 0x80, 200, 6, 7, secs + 2208988800, frac, 0, 0, 0)
        c.sendall(b"$\x01" + struct.pack(">H", len(sr)) + sr)
        for i in range(51):
            nal = (b"\x65" + b"\x88" * 50) if i % 25 == 0 else (b"\x41" + b"\x9a" * 20)
            pkt = struct.pack(">BBHII", 0x80, 0x80 | 96, i, i * 3600, 7) + nal
            c.sendall(b"$\x00" + struct.pack(">H", len(pkt)) + pkt)
        assert ask(f"TEARDOWN {url}/ntp RTSP/1.0\r\nCSeq: 4\r\n\r\n").startswith(b"RTSP/1.0 200")
    frags = fragments(server, "ntp", want=3)
    assert len(frags) == 3
    first = frags[0]["ProducerTimestamp"].timestamp()
    assert abs(first - producer_time) < 1, (first, producer_time)
    assert abs(frags[1]["ProducerTimestamp"].timestamp() - (producer_time + 1)) < 0.05
    assert abs(frags[0]["ServerTimestamp"].timestamp() - time.time()) < 60


def test_new_parameter_sets_start_a_new_init_segment(server):
    """A camera that changes resolution mid-stream (new SPS in band on a keyframe): the
    fragment before ends there and the rest gets its own init segment, which HLS shows
    as a discontinuity with a second EXT-X-MAP."""
    import base64
    import datetime as dt
    import struct

    from test_playback import media_playlist_of

    sps_a = base64.b64decode("Z2QAHqyyAUBf8uAiAAADAAIAAAMAZR4sXJA=")  # 640x360
    sps_b = base64.b64decode("Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=")  # 640x360, other settings
    pps = base64.b64decode("aOvDyyLA")
    server.client("kinesisvideo").create_stream(StreamName="resize")
    sdp = (b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; "
           b"sprop-parameter-sets=" + base64.b64encode(sps_a) + b"," + base64.b64encode(pps) + b"\r\na=control:streamid=0\r\n")
    url = server.rtsp_url
    host, port = url.removeprefix("rtsp://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as c:
        assert rtsp_ask(c, f"ANNOUNCE {url}/resize RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {len(sdp)}\r\n\r\n", sdp).startswith(b"RTSP/1.0 200")
        assert rtsp_ask(c, f"SETUP {url}/resize/streamid=0 RTSP/1.0\r\nCSeq: 2\r\n"
                           "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n").startswith(b"RTSP/1.0 200")
        assert rtsp_ask(c, f"RECORD {url}/resize RTSP/1.0\r\nCSeq: 3\r\n\r\n").startswith(b"RTSP/1.0 200")
        seq = 0

        def send(ts, payload, marker):
            nonlocal seq
            pkt = struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | 96, seq, ts, 9) + payload
            seq += 1
            c.sendall(b"$\x00" + struct.pack(">H", len(pkt)) + pkt)

        for i in range(75):
            ts = i * 3600
            if i % 25 == 0:
                sps = sps_a if i < 25 else sps_b
                stap = b"\x18" + struct.pack(">H", len(sps)) + sps + struct.pack(">H", len(pps)) + pps
                send(ts, stap, False)
                send(ts, b"\x65" + b"\x88" * 40, True)
            else:
                send(ts, b"\x41" + b"\x9a" * 20, True)
        assert rtsp_ask(c, f"TEARDOWN {url}/resize RTSP/1.0\r\nCSeq: 4\r\n\r\n").startswith(b"RTSP/1.0 200")
    frags = fragments(server, "resize", want=3)
    assert len(frags) == 3
    now = dt.datetime.now(dt.timezone.utc)
    rng = {"StartTimestamp": now - dt.timedelta(minutes=5), "EndTimestamp": now}
    hls_url = server.client("kinesis-video-archived-media").get_hls_streaming_session_url(
        StreamName="resize", PlaybackMode="ON_DEMAND",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng})["HLSStreamingSessionURL"]
    _, text = media_playlist_of(hls_url)
    assert text.count("#EXT-X-MAP:") == 2, text


def test_kill9_during_an_rtsp_push_keeps_every_persisted_fragment(data_dir, tmp_path):
    s = Server(data_dir).start()
    s.client("kinesisvideo").create_stream(StreamName="crashcam")
    pusher = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                               str(FIXTURES / "av.mp4"), "-c", "copy", "-f", "rtsp", f"{s.rtsp_url}/crashcam"])
    try:
        assert wait_until(lambda: len(fragments(s, "crashcam")) >= 3, timeout=30)
        listed = fragments(s, "crashcam")
        s.kill9()
    finally:
        pusher.kill()
        pusher.wait()
    s = Server(data_dir).start()
    try:
        after = fragments(s, "crashcam")
        numbers = [f["FragmentNumber"] for f in after]
        assert all(f["FragmentNumber"] in numbers for f in listed)
        out = read_back(s, "crashcam", after, tmp_path)
        assert decode_clean(out)
        assert int(next(x for x in probe_frames(out) if x["codec_name"] == "h264")["nb_read_frames"]) >= 75
    finally:
        s.stop()
