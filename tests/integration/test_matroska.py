"""Matroska through PutMedia, as Kinesis Video's producers send it: ffmpeg's live
Matroska (`-f matroska -live 1`), whole and streamed while it is encoded, and
GStreamer's `matroskamux streamable=true`; acknowledgements per fragment, then the
stored fragments read back by ListFragments, GetClip and ffprobe."""
import http.client
import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import FIXTURES, ffprobe


def put_media(server, stream, body, timecode_type="RELATIVE", start="1700000000.000"):
    """PutMedia with a chunked body (bytes or an iterable of bytes); returns the acks."""
    u = urlparse(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    headers = {"x-amzn-stream-name": stream, "x-amzn-fragment-timecode-type": timecode_type,
               "x-amzn-producer-start-timestamp": start}
    if isinstance(body, bytes):
        conn.request("POST", "/putMedia", body=body, headers=headers)
    else:
        conn.request("POST", "/putMedia", body=body, headers=headers, encode_chunked=True)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    assert r.status == 200, text
    return [json.loads(l) for l in text.splitlines() if l.strip().startswith("{")]


def persisted(acks):
    return [a for a in acks if a["EventType"] == "PERSISTED"]


def test_ffmpegs_live_matroska_is_stored_as_fragments_every_reader_reads(server, tmp_path):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="mkv", DataRetentionInHours=24)
    acks = put_media(server, "mkv", (FIXTURES / "av.mkv").read_bytes())
    done = persisted(acks)
    assert len(done) == 4, acks
    # Audio opens the first fragment at 0; each next one is its keyframe, presented 80 ms
    # after its decode time (B-frames).
    assert [a["FragmentTimecode"] for a in done] == [0, 1080, 2080, 3080], acks
    assert not [a for a in acks if a["EventType"] == "ERROR"], acks
    am = server.client("kinesis-video-archived-media")
    frags = am.list_fragments(StreamName="mkv")["Fragments"]
    assert len(frags) == 4
    starts = sorted(f["ProducerTimestamp"].timestamp() for f in frags)
    assert [round(s - 1700000000, 2) for s in starts] == [0.0, 1.08, 2.08, 3.08], "RELATIVE: start + timecode"
    clip = am.get_clip(StreamName="mkv", ClipFragmentSelector={
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": 1700000000, "EndTimestamp": 1700000004}})["Payload"].read()
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    streams = ffprobe(path)["streams"]
    assert [s["codec_name"] for s in streams] == ["h264", "aac"], streams
    assert streams[0]["width"] == 320 and streams[1]["channels"] == 1


def test_matroska_streamed_while_encoded_by_ffmpeg_and_gstreamer(server):
    kv = server.client("kinesisvideo")
    for name in ("ff-live", "gst-live"):
        kv.create_stream(StreamName=name, DataRetentionInHours=24)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3", "-c:v", "libx264",
         "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "matroska", "-live", "1", "-"],
        stdout=subprocess.PIPE)
    acks = put_media(server, "ff-live", iter(lambda: ffmpeg.stdout.read(4096), b""), start=f"{time.time():.3f}")
    ffmpeg.wait(30)
    assert len(persisted(acks)) >= 3, acks
    gst = subprocess.Popen(
        ["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=75", "!", "video/x-raw,width=320,height=240,framerate=25/1",
         "!", "x265enc", "key-int-max=25", "speed-preset=ultrafast", "!", "h265parse", "!",
         "matroskamux", "streamable=true", "!", "fdsink", "fd=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    acks = put_media(server, "gst-live", iter(lambda: gst.stdout.read(4096), b""))
    gst.wait(60)
    assert len(persisted(acks)) >= 2, acks
    am = server.client("kinesis-video-archived-media")
    assert len(am.list_fragments(StreamName="gst-live")["Fragments"]) >= 2


def test_bad_matroska_is_refused_with_kvs_errors(server):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="bad-mkv", DataRetentionInHours=24)
    mkv = (FIXTURES / "av.mkv").read_bytes()
    # Cut inside the Tracks element (the first match of its ID is the SeekHead's entry).
    tracks_at = mkv.index(b"\x16\x54\xae\x6b", mkv.index(b"\x16\x54\xae\x6b") + 4)
    cut = mkv[:tracks_at + 40]
    acks = put_media(server, "bad-mkv", cut)
    errors = [a for a in acks if a["EventType"] == "ERROR"]
    assert errors and errors[-1]["ErrorId"] in (4000, 4006), acks
    # Not a Matroska DocType.
    acks = put_media(server, "bad-mkv", b"\x1a\x45\xdf\xa3\x84\x42\x82\x81\x41")
    assert [a["ErrorId"] for a in acks if a["EventType"] == "ERROR"] == [4006], acks
    assert persisted(put_media(server, "bad-mkv", mkv)), "the stream takes good Matroska after bad"


KVSSINK_FIRST_TIMECODE = 1796656215154


def test_the_kvs_producer_sdks_own_matroska_signed_as_it_signs(signed_server, tmp_path):
    """fixtures/kvssink.mkv is what kvssink (the KVS producer SDK's GStreamer element)
    sent: PutMedia signed over the empty body's hash, absolute Cluster timecodes, an
    end-of-fragment tag closing the last fragment. Replayed here, every fragment is
    acknowledged with its Cluster's timecode and can be read back."""
    from test_auth import producer_sdk_put_media
    from conftest import ACCESS_KEY, SECRET_KEY
    kv = signed_server.client("kinesisvideo")
    kv.create_stream(StreamName="kvssink", DataRetentionInHours=2)
    body = (FIXTURES / "kvssink.mkv").read_bytes()
    status, acks = producer_sdk_put_media(signed_server, "kvssink", body, ACCESS_KEY, SECRET_KEY,
                                          headers={"x-amzn-fragment-timecode-type": "ABSOLUTE"})
    assert status == 200
    done = persisted(acks)
    assert [a["FragmentTimecode"] for a in done] == [KVSSINK_FIRST_TIMECODE + 400 * i for i in range(5)], acks
    am = signed_server.client("kinesis-video-archived-media")
    frags = am.list_fragments(StreamName="kvssink")["Fragments"]
    assert len(frags) == 5
    assert min(f["ProducerTimestamp"].timestamp() for f in frags) == KVSSINK_FIRST_TIMECODE / 1000
    clip = am.get_clip(StreamName="kvssink", ClipFragmentSelector={
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": KVSSINK_FIRST_TIMECODE / 1000 - 1,
                           "EndTimestamp": KVSSINK_FIRST_TIMECODE / 1000 + 5}})["Payload"].read()
    (tmp_path / "clip.mp4").write_bytes(clip)
    streams = ffprobe(tmp_path / "clip.mp4")["streams"]
    assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [("h264", 640, 360)]


KVSSINK = os.environ.get("KVS_PREFIX", "/tmp/kvssink")
KVSSINK_RUN = Path(__file__).resolve().parents[3] / "shared" / "kvssink" / "run.sh"


@pytest.mark.skipif(not (os.path.exists(f"{KVSSINK}/lib/gstreamer-1.0/libgstkvssink.so") and KVSSINK_RUN.exists()),
                    reason="kvssink is not built (../shared/kvssink/build.sh needs the SDK sources, "
                           "which a clean CI machine cannot fetch); fixtures/kvssink.mkv covers its bytes")
def test_kvssink_pushes_live(signed_server, tmp_path):
    from conftest import ACCESS_KEY, SECRET_KEY
    script = KVSSINK_RUN
    env = dict(os.environ, KVS_PREFIX=KVSSINK, NUM_BUFFERS="75", RUN_TIMEOUT="60", OUT_DIR=str(tmp_path / "run"))
    p = subprocess.run([str(script), signed_server.url, "live-kvssink", ACCESS_KEY, SECRET_KEY, "us-east-1"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert "gst-launch exit: 0" in p.stdout, p.stdout[-3000:]
    am = signed_server.client("kinesis-video-archived-media")
    assert len(am.list_fragments(StreamName="live-kvssink")["Fragments"]) >= 5
