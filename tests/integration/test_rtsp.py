"""RTSP publishers (ffmpeg, GStreamer) pushing into streams, read back with boto3 and ffprobe."""
import shutil
import socket
import subprocess
import time

import pytest

from conftest import FIXTURES, Server, ffprobe


def push(url, fixture="av.mp4", transport="tcp", timeout=60, check=True, extra=()):
    p = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(FIXTURES / fixture),
                        *extra, "-c", "copy", "-f", "rtsp", "-rtsp_transport", transport, url],
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def fragments(s, name, want=None, timeout=15):
    archived = s.client("kinesis-video-archived-media")
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
    body = s.client("kinesis-video-archived-media").get_media_for_fragment_list(
        StreamName=name, Fragments=[f["FragmentNumber"] for f in frags])["Payload"].read()
    out = tmp_path / f"{name}.mp4"
    out.write_bytes(body)
    return out


def probe_frames(path):
    p = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                        "stream=codec_name,width,height,nb_read_frames,sample_rate,channels", "-of", "json", str(path)],
                       capture_output=True, text=True, check=True)
    import json
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
    # Producer times are wall-clock, a second apart.
    ts = [f["ProducerTimestamp"].timestamp() for f in frags]
    assert all(abs((b - a) - 1.0) < 0.05 for a, b in zip(ts, ts[1:]))
    assert abs(ts[0] - time.time()) < 60


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
            c.sendall(text.encode() + body)
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += c.recv(4096)
            return reply
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
    p = subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=75", "is-live=true", "!",
                        "video/x-raw,width=320,height=240,framerate=25/1", "!", "x264enc", "tune=zerolatency",
                        "key-int-max=25", "!", "h264parse", "!", "rtspclientsink", f"location={server.rtsp_url}/gst"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    frags = fragments(server, "gst", want=2)
    assert len(frags) >= 2
    streams = probe_frames(read_back(server, "gst", frags, tmp_path))
    assert streams[0]["codec_name"] == "h264" and int(streams[0]["nb_read_frames"]) >= 50
