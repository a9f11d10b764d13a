"""A data directory on a small filesystem (a tmpfs this test mounts): once free space
falls under the reserve, PutMedia, SQS sends and Kinesis puts are refused with a clear
error, everything acknowledged before stays whole and playable, and the server takes
data again by itself when space comes back (a deleted stream). A read-only data
directory is refused at start with the system's reason (a filesystem cannot be made
read-only under a server that holds files open for writing; one the kernel forces
read-only is refused by the same free-space check, which reads the mount's flags)."""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import BIN, FIXTURES, Server, decode_errors


def mount_tmpfs(path, size_mb):
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                       capture_output=True, text=True)
    return p.returncode == 0, p.stderr


@pytest.fixture
def small_disk():
    mnt = Path(tempfile.mkdtemp(prefix="kinescope-small-"))
    ok, why = mount_tmpfs(mnt, 24)
    if not ok:
        os.rmdir(mnt)
        pytest.skip(f"needs to mount a tmpfs (root with CAP_SYS_ADMIN): {why.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        os.rmdir(mnt)


def big_fmp4(path):
    """About 24 MB of 20 Mbit/s H.264, one-second GOPs, as fragmented MP4."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=25", "-t", "10", "-c:v", "libx264", "-preset", "ultrafast",
                    "-b:v", "20M", "-g", "25", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(path)],
                   check=True, timeout=120)


def put(server, stream, source, *extra):
    p = subprocess.run([BIN, "put", "--endpoint", server.url, "--stream", stream, *extra, str(source)],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_a_full_disk_refuses_new_data_keeps_the_old_and_recovers(small_disk, tmp_path):
    source = tmp_path / "big.mp4"
    big_fmp4(source)
    config = small_disk / "kinescope.toml"
    config.write_text("[limits]\ndisk_reserve_mb = 8\n")
    s = Server(small_disk / "data", extra_args=["--config", str(config)]).start()
    try:
        sqs, kinesis = s.client("sqs"), s.client("kinesis")
        queue = sqs.create_queue(QueueName="events")["QueueUrl"]
        kinesis.create_stream(StreamName="detections", ShardCount=1)
        rc, acks = put(s, "cam", source, "--create")
        persisted = [a for a in acks if a["EventType"] == "PERSISTED"]
        refused = [a for a in acks if a["EventType"] == "ERROR"]
        assert rc != 0 and persisted and refused, acks[-3:]
        assert all("refused until space is freed" in a["Message"] for a in refused), refused[0]

        # Another process takes what is left above the reserve: now every service
        # refuses, with 503 and the reason.
        st = os.statvfs(small_disk)
        (small_disk / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - 4 * 1024 * 1024))
        time.sleep(0.3)  # the server looks at the filesystem every 100 ms
        with pytest.raises(ClientError) as e:
            sqs.send_message(QueueUrl=queue, MessageBody="x")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "reserve" in e.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as e:
            kinesis.put_record(StreamName="detections", PartitionKey="k", Data=b"x")
        assert e.value.response["Error"]["Code"] == "ServiceUnavailable"

        # What was acknowledged is whole and plays.
        archived = s.client("kinesis-video-archived-media", accept="video/mp4")
        body = archived.get_media_for_fragment_list(
            StreamName="cam", Fragments=[a["FragmentNumber"] for a in persisted])["Payload"].read()
        out = tmp_path / "kept.mp4"
        out.write_bytes(body)
        assert decode_errors(out) == (0, "")

        # Space comes back (the stream is deleted): data is taken again, no restart.
        kv = s.client("kinesisvideo")
        kv.delete_stream(StreamARN=kv.describe_stream(StreamName="cam")["StreamInfo"]["StreamARN"])
        sqs.send_message(QueueUrl=queue, MessageBody="after")
        kinesis.put_record(StreamName="detections", PartitionKey="k", Data=b"after")
        rc, acks = put(s, "cam2", FIXTURES / "av.mp4", "--create")
        assert rc == 0 and all(a["EventType"] != "ERROR" for a in acks)

        # A read-only data directory: the server will not start on it, says why, and
        # starts again, with everything, once it is writable.
        s.stop()
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        try:
            p = subprocess.run([BIN, "serve", "--config", str(config), "--data-dir", str(small_disk / "data"),
                                "--http", "127.0.0.1:0", "--rtsp", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=30)
            assert p.returncode != 0 and "Read-only file system" in p.stderr, p.stderr[-500:]
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        s.start()
        sqs = s.client("sqs")
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in got] == ["after"]
    finally:
        s.stop()
