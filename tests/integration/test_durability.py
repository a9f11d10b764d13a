"""kill -9 in the middle of ingest: after a restart every fragment acknowledged PERSISTED
is listed and plays, and nothing torn is served."""

import json
import os
import subprocess
import threading

from conftest import BIN, Server, decode_errors, wait_for


def producer(server, stream, realtime, seconds):
    """ffmpeg generating H.264 into `kinescope put -`; returns (processes, persisted list)."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error"]
    if realtime:
        args.append("-re")
    args += ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", str(seconds), "-c:v", "libx264",
             "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-f", "mp4",
             "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-"]
    ff = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    env = {k: v for k, v in os.environ.items() if not k.endswith(("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"))}
    put = subprocess.Popen([BIN, "put", "--endpoint", server.url, "--stream", stream, "-"], stdin=ff.stdout,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    ff.stdout.close()
    persisted = []

    def read():
        for line in put.stdout:
            ack = json.loads(line)
            if ack["EventType"] == "PERSISTED":
                persisted.append(ack["FragmentNumber"])

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return (ff, put, t), persisted


def test_kill9_during_ingest_loses_no_acknowledged_fragment(data_dir, tmp_path):
    server = Server(data_dir).start()
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="live")
    kv.create_stream(StreamName="burst")
    live_procs, live = producer(server, "live", realtime=True, seconds=60)
    burst_procs, burst = producer(server, "burst", realtime=False, seconds=600)
    # Kill while both are writing: the burst producer writes as fast as it can.
    wait_for(lambda: len(live) >= 3 and len(burst) >= 20, timeout=60)
    server.kill9()
    for ff, put, t in (live_procs, burst_procs):
        put.wait(30)
        ff.kill()
        ff.wait()
        t.join(10)
    acked = {"live": list(live), "burst": list(burst)}
    assert len(acked["live"]) >= 3 and len(acked["burst"]) >= 20

    server = Server(data_dir, extra_args=[]).start(port=0)
    try:
        assert any("store opened" in line for line in server.log)
        archived = server.client("kinesis-video-archived-media", accept="video/mp4")
        for stream, numbers in acked.items():
            listed = []
            for page in archived.get_paginator("list_fragments").paginate(StreamName=stream):
                listed += [f["FragmentNumber"] for f in page["Fragments"]]
            missing = set(numbers) - set(listed)
            assert not missing, f"{stream}: acknowledged but lost after kill -9: {sorted(missing)}"
            resp = archived.get_media_for_fragment_list(StreamName=stream, Fragments=sorted(listed, key=int)[-100:])
            out = tmp_path / f"{stream}.mp4"
            out.write_bytes(resp["Payload"].read())
            rc, errors = decode_errors(out)
            assert rc == 0 and errors == "", errors

        # The stream takes new fragments after recovery, numbered after the old ones.
        procs, more = producer(server, "burst", realtime=False, seconds=3)
        ff, put, t = procs
        put.wait(60)
        t.join(10)
        assert more and int(more[0]) > max(int(n) for n in acked["burst"])
    finally:
        server.stop()
