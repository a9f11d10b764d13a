"""PutMedia in, ListFragments / GetMediaForFragmentList / GetMedia out, read back by
ffprobe and ffmpeg."""

import json
import subprocess
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import FIXTURES, BIN, decode_errors, ffprobe, fragment_metadata, mp4_top_boxes, wait_for


def acks_of(acks, kind):
    return [a for a in acks if a["EventType"] == kind]


def first_metadata(payload):
    """Reads a GetMedia payload until its first fragment's metadata box, then closes it."""
    buf = bytearray()
    try:
        while True:
            metas = fragment_metadata(bytes(buf))
            if metas:
                return metas[0]
            chunk = payload.read(1024)
            assert chunk, "stream ended before any fragment"
            buf.extend(chunk)
    finally:
        payload.close()


def raw_put(server, stream, body, headers=None):
    """PutMedia with urllib: returns (status, [acks] or error body)."""
    h = {"x-amzn-stream-name": stream, "x-amzn-fragment-timecode-type": "RELATIVE", "x-amzn-producer-start-timestamp": "1700000000"}
    h.update(headers or {})
    req = urllib.request.Request(server.url + "/putMedia", data=body, method="POST", headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, [json.loads(l) for l in r.read().decode().splitlines() if l.strip()]
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}") | {"ErrorType": e.headers.get("x-amzn-ErrorType")}


def test_put_media_acks_list_fragments_and_read_back(server, tmp_path):
    _, acks, err = server.put("cam", FIXTURES / "av.mp4", "--create", "--producer-start-timestamp", "1700000000")
    assert "4 fragments persisted" in err
    persisted = acks_of(acks, "PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == [0, 1000, 2000, 3000]
    numbers = [a["FragmentNumber"] for a in persisted]
    assert len(acks_of(acks, "BUFFERING")) == 4
    assert [a["FragmentNumber"] for a in acks_of(acks, "RECEIVED")] == numbers
    assert all(int(b) > int(a) for a, b in zip(numbers, numbers[1:]))

    kv = server.client("kinesisvideo")
    endpoint = kv.get_data_endpoint(StreamName="cam", APIName="LIST_FRAGMENTS")["DataEndpoint"]
    archived = server.client("kinesis-video-archived-media", accept="video/mp4")
    assert archived.meta.endpoint_url == endpoint

    sel = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {"StartTimestamp": 1700000000, "EndTimestamp": 1700000010}}
    frags = archived.list_fragments(StreamName="cam", FragmentSelector=sel)["Fragments"]
    assert sorted(f["FragmentNumber"] for f in frags) == sorted(numbers)
    assert sorted(f["ProducerTimestamp"].timestamp() for f in frags) == [1700000000, 1700000001, 1700000002, 1700000003]
    assert all(f["FragmentLengthInMilliseconds"] == 1000 and f["FragmentSizeInBytes"] > 1000 for f in frags)

    # Inclusive on fragment start: 1 s .. 2 s holds the fragments starting at 1 and 2.
    sel["TimestampRange"] = {"StartTimestamp": 1700000000.5, "EndTimestamp": 1700000002}
    frags = archived.list_fragments(StreamName="cam", FragmentSelector=sel)["Fragments"]
    assert sorted(f["ProducerTimestamp"].timestamp() for f in frags) == [1700000001, 1700000002]

    now = time.time()
    sel = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": {"StartTimestamp": now - 60, "EndTimestamp": now + 60}}
    page = archived.list_fragments(StreamName="cam", FragmentSelector=sel, MaxResults=3)
    assert len(page["Fragments"]) == 3
    rest = archived.list_fragments(StreamName="cam", NextToken=page["NextToken"], MaxResults=3)
    assert len(rest["Fragments"]) == 1 and "NextToken" not in rest
    assert sorted(f["FragmentNumber"] for f in page["Fragments"] + rest["Fragments"]) == sorted(numbers)

    resp = archived.get_media_for_fragment_list(StreamName="cam", Fragments=numbers)
    assert resp["ContentType"] == "video/mp4"
    out = tmp_path / "read.mp4"
    out.write_bytes(resp["Payload"].read())
    probe = ffprobe(out)
    codecs = sorted(s["codec_name"] for s in probe["streams"])
    assert codecs == ["aac", "h264"]
    assert abs(float(probe["format"]["duration"]) - 4.08) < 0.1
    assert decode_errors(out) == (0, "")
    assert [m["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] for m in fragment_metadata(out.read_bytes())] == numbers

    with pytest.raises(ClientError) as e:
        archived.get_media_for_fragment_list(StreamName="cam", Fragments=["999999"])
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_short_chunks_are_stored_as_keyframe_fragments(server, tmp_path):
    _, acks, _ = server.put("chunks", FIXTURES / "chunked.mp4", "--create")
    persisted = acks_of(acks, "PERSISTED")
    assert [a["FragmentTimecode"] for a in persisted] == [0, 1000]
    archived = server.client("kinesis-video-archived-media", accept="video/mp4")
    resp = archived.get_media_for_fragment_list(StreamName="chunks", Fragments=[a["FragmentNumber"] for a in persisted])
    out = tmp_path / "c.mp4"
    out.write_bytes(resp["Payload"].read())
    assert abs(float(ffprobe(out)["format"]["duration"]) - 2.0) < 0.1
    assert decode_errors(out)[0] == 0


def test_get_media_follows_a_live_push(server, tmp_path):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="live")
    media = server.client("kinesis-video-media", read_timeout=30, accept="video/mp4")
    resp = media.get_media(StreamName="live", StartSelector={"StartSelectorType": "NOW"})
    assert resp["ContentType"] == "video/mp4"
    got = bytearray()

    def reader():
        body = resp["Payload"]
        while len(fragment_metadata(bytes(got))) < 5:
            chunk = body.read(4096)
            if not chunk:
                break
            got.extend(chunk)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.5)
    # A live producer: ffmpeg at real-time pace, piped into `kinescope put -`.
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "5",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p", "-f", "mp4",
         "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-"],
        stdout=subprocess.PIPE)
    rc, acks, err = server.put("live", "-", stdin=ffmpeg.stdout)
    ffmpeg.wait()
    t.join(20)
    metas = fragment_metadata(bytes(got))
    persisted = [a["FragmentNumber"] for a in acks_of(acks, "PERSISTED")]
    assert len(persisted) == 5
    assert [m["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] for m in metas] == persisted
    assert all(m["AWS_KINESISVIDEO_CONTINUATION_TOKEN"] == m["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] for m in metas)
    out = tmp_path / "live.mp4"
    out.write_bytes(bytes(got))
    assert ffprobe(out)["streams"][0]["codec_name"] == "h264"
    assert decode_errors(out)[0] == 0

    # Every start selector resolves on a stream with data.
    first, third = persisted[0], persisted[2]
    for sel, want in [
        ({"StartSelectorType": "EARLIEST"}, first),
        ({"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": first}, persisted[1]),
        ({"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": persisted[1]}, third),
        ({"StartSelectorType": "NOW"}, persisted[-1]),
    ]:
        r = media.get_media(StreamName="live", StartSelector=sel)
        assert first_metadata(r["Payload"])["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] == want, sel
    archived = server.client("kinesis-video-archived-media", accept="video/mp4")
    listed = archived.list_fragments(StreamName="live")["Fragments"]
    by_number = {f["FragmentNumber"]: f for f in listed}
    for kind, field in [("SERVER_TIMESTAMP", "ServerTimestamp"), ("PRODUCER_TIMESTAMP", "ProducerTimestamp")]:
        ts = by_number[third][field]
        r = media.get_media(StreamName="live", StartSelector={"StartSelectorType": kind, "StartTimestamp": ts})
        assert first_metadata(r["Payload"])["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] == third, kind


def test_bad_input_is_refused_and_loses_nothing(server, tmp_path):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="bad")
    good = (FIXTURES / "av.mp4").read_bytes()

    # Unknown stream: the AWS error before any acknowledgement.
    status, body = raw_put(server, "nope", good)
    assert status == 404 and body["ErrorType"] == "ResourceNotFoundException"
    status, body = raw_put(server, "bad", good, {"x-amzn-fragment-timecode-type": "SIDEWAYS"})
    assert status == 400 and body["ErrorType"] == "InvalidArgumentException"

    # Garbage: one ERROR ack, nothing stored.
    status, acks = raw_put(server, "bad", b"\x00\x00\x00\x02AAAA" + b"x" * 100)
    assert status == 200 and [a["ErrorCode"] for a in acks] == ["INVALID_MKV_DATA"]

    # Media before any init segment.
    boxes = mp4_top_boxes(good)
    moov_end = next(pos + size for kind, pos, size in boxes if kind == "moov")
    status, acks = raw_put(server, "bad", good[moov_end:])
    assert acks[-1]["ErrorCode"] == "INVALID_MKV_DATA" and "init segment" in acks[-1]["Message"]

    # A good stream whose tail is torn: the complete fragments persist, the rest errors.
    status, acks = raw_put(server, "bad", good[: len(good) - 3000])
    assert len(acks_of(acks, "PERSISTED")) == 3
    # (PERSISTED acks are pipelined, so the error may come before them.)
    assert [a["ErrorId"] for a in acks_of(acks, "ERROR")] == [4000]
    kept = [a["FragmentNumber"] for a in acks_of(acks, "PERSISTED")]

    # A box with an absurd size after good fragments: those stay, the stream is refused.
    moof_pos = [pos for kind, pos, size in boxes if kind == "moof"]
    absurd = good[: moof_pos[2]] + b"\xff\xff\xff\xf0moof" + b"\x00" * 64
    status, acks = raw_put(server, "bad", absurd, {"x-amzn-producer-start-timestamp": "1700001000"})
    assert len(acks_of(acks, "PERSISTED")) == 2
    assert [a["ErrorCode"] for a in acks_of(acks, "ERROR")] == ["INVALID_MKV_DATA"]
    kept += [a["FragmentNumber"] for a in acks_of(acks, "PERSISTED")]

    # Time going backwards inside one session: refused fragment by fragment.
    status, acks = raw_put(server, "bad", good + good[moov_end:], {"x-amzn-producer-start-timestamp": "1700002000"})
    errors = [a for a in acks if a["EventType"] == "ERROR"]
    # The replay's fragments at 0, 1 and 2 s start before the last one kept (3 s); its
    # fragment at 3 s does not (equal is not lesser) and is kept.
    assert [a["FragmentTimecode"] for a in acks_of(acks, "PERSISTED")] == [0, 1000, 2000, 3000, 3000]
    assert [(a["ErrorCode"], a["FragmentTimecode"]) for a in errors] == [("FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS", t) for t in (0, 1000, 2000)]
    kept += [a["FragmentNumber"] for a in acks_of(acks, "PERSISTED")]

    archived = server.client("kinesis-video-archived-media", accept="video/mp4")
    listed = sorted(f["FragmentNumber"] for f in archived.list_fragments(StreamName="bad")["Fragments"])
    assert listed == sorted(kept)
    resp = archived.get_media_for_fragment_list(StreamName="bad", Fragments=kept)
    out = tmp_path / "kept.mp4"
    out.write_bytes(resp["Payload"].read())
    assert decode_errors(out)[0] == 0


def test_fragment_too_large_is_refused_alone(data_dir, tmp_path):
    from conftest import Server
    config = tmp_path / "kinescope.toml"
    config.write_text("[limits]\nmax_fragment_bytes = 26000\n")
    s = Server(data_dir, extra_args=["--config", str(config)]).start()
    try:
        rc, acks, err = s.put("big", FIXTURES / "av.mp4", "--create", check=False)
        assert rc != 0
        errors = [a for a in acks if a["EventType"] == "ERROR"]
        assert errors and {a["ErrorCode"] for a in errors} == {"MAX_FRAGMENT_SIZE_REACHED"}
        # av.mp4's fragments are 22.5, 23.9, 27.5 and 29.0 kB: two fit, two do not.
        assert len(acks_of(acks, "PERSISTED")) == 2 and len(errors) == 2
    finally:
        s.stop()


def shift_tfdt(data, seconds):
    """Adds `seconds` to every tfdt of a single-track fragmented MP4, in place: the
    stream an absolute-clock producer would send."""
    data = bytearray(data)
    pos = data.find(b"mdhd")
    version = data[pos + 4]
    ts_at = pos + 8 + (16 if version == 1 else 8)
    timescale = int.from_bytes(data[ts_at:ts_at + 4], "big")
    start = 0
    while (pos := data.find(b"tfdt", start)) != -1:
        assert data[pos + 4] == 1, "64-bit tfdt expected"
        value = int.from_bytes(data[pos + 8:pos + 16], "big") + seconds * timescale
        data[pos + 8:pos + 16] = value.to_bytes(8, "big")
        start = pos + 16
    return bytes(data)


def test_absolute_timecodes(server, tmp_path):
    server.client("kinesisvideo").create_stream(StreamName="abs")
    path = tmp_path / "abs.mp4"
    path.write_bytes(shift_tfdt((FIXTURES / "video_only.mp4").read_bytes(), 1_700_000_000))
    _, acks, _ = server.put("abs", path, "--timecode-type", "absolute")
    assert [a["FragmentTimecode"] for a in acks_of(acks, "PERSISTED")] == [1_700_000_000_000, 1_700_000_001_000]
    archived = server.client("kinesis-video-archived-media", accept="video/mp4")
    sel = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {"StartTimestamp": 1699999999, "EndTimestamp": 1700000002}}
    frags = archived.list_fragments(StreamName="abs", FragmentSelector=sel)["Fragments"]
    assert sorted(f["ProducerTimestamp"].timestamp() for f in frags) == [1_700_000_000, 1_700_000_001]


def test_fragments_know_their_init_segment(server, tmp_path):
    server.client("kinesisvideo").create_stream(StreamName="mixed")
    _, first, _ = server.put("mixed", FIXTURES / "av.mp4", "--producer-start-timestamp", "1700000000")
    _, second, _ = server.put("mixed", FIXTURES / "video_only.mp4", "--producer-start-timestamp", "1700000100")
    av = [a["FragmentNumber"] for a in acks_of(first, "PERSISTED")]
    video = [a["FragmentNumber"] for a in acks_of(second, "PERSISTED")]
    archived = server.client("kinesis-video-archived-media", accept="video/mp4")

    out = tmp_path / "video.mp4"
    out.write_bytes(archived.get_media_for_fragment_list(StreamName="mixed", Fragments=video)["Payload"].read())
    assert [s["codec_name"] for s in ffprobe(out)["streams"]] == ["h264"]

    out = tmp_path / "av.mp4"
    out.write_bytes(archived.get_media_for_fragment_list(StreamName="mixed", Fragments=av[-1:])["Payload"].read())
    assert sorted(s["codec_name"] for s in ffprobe(out)["streams"]) == ["aac", "h264"]

    # Across the change, each fragment is preceded by its own init segment.
    both = archived.get_media_for_fragment_list(StreamName="mixed", Fragments=av[-1:] + video[:1])["Payload"].read()
    assert [k for k, _, _ in mp4_top_boxes(both) if k in ("moov", "moof")] == ["moov", "moof", "moov", "moof"]


def test_producer_disconnecting_mid_fragment_keeps_what_was_complete(server, tmp_path):
    import http.client
    server.client("kinesisvideo").create_stream(StreamName="cut")
    good = (FIXTURES / "av.mp4").read_bytes()
    moofs = [pos for kind, pos, _ in mp4_top_boxes(good) if kind == "moof"]
    # Send the init, two whole fragments, and half of the third; then drop the connection.
    cut_at = moofs[2] + (moofs[3] - moofs[2]) // 2
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/putMedia")
    for k, v in {"x-amzn-stream-name": "cut", "x-amzn-fragment-timecode-type": "RELATIVE",
                 "x-amzn-producer-start-timestamp": "1700000000", "Transfer-Encoding": "chunked"}.items():
        conn.putheader(k, v)
    conn.endheaders()
    for i in range(0, cut_at, 8192):
        piece = good[i:min(i + 8192, cut_at)]
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    archived = server.client("kinesis-video-archived-media", accept="video/mp4")
    # The first fragment is complete once the second's moof has arrived; wait for it.
    wait_for(lambda: archived.list_fragments(StreamName="cut")["Fragments"])
    conn.sock.shutdown(2)
    conn.close()
    frags = wait_for(lambda: (f := archived.list_fragments(StreamName="cut")["Fragments"]) and len(f) >= 2 and f)
    time.sleep(0.5)
    frags = archived.list_fragments(StreamName="cut")["Fragments"]
    assert sorted(f["ProducerTimestamp"].timestamp() for f in frags) == [1700000000, 1700000001]
    numbers = sorted((f["FragmentNumber"] for f in frags), key=int)
    out = tmp_path / "cut.mp4"
    out.write_bytes(archived.get_media_for_fragment_list(StreamName="cut", Fragments=numbers)["Payload"].read())
    assert decode_errors(out)[0] == 0
    # The stream takes the next producer normally.
    _, acks, _ = server.put("cut", FIXTURES / "av.mp4")
    assert len(acks_of(acks, "PERSISTED")) == 4
