"""Kinesis Video's remaining control-plane operations through boto3 against the real
binary: stream storage configuration, mapped resources (a channel recording into a
stream), and edge configurations whose recorder is a real RTSP camera (GStreamer's RTSP
server) named by a secret ARN in the config file."""
import time

import botocore.exceptions
import pytest

from conftest import Server, free_port
from test_rtsp import HAVE_GST_PY, Camera, wait_until

HUB = "arn:aws:iot:us-east-1:123456789012:thing/hub-1"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:door-camera-AbC123"


def code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def test_storage_tier_is_stored_versioned_and_reported(server):
    kv = server.client("kinesisvideo")
    arn = kv.create_stream(StreamName="tiered", DataRetentionInHours=24,
                           StreamStorageConfiguration={"DefaultStorageTier": "WARM"})["StreamARN"]
    d = kv.describe_stream_storage_configuration(StreamName="tiered")
    assert d["StreamStorageConfiguration"] == {"DefaultStorageTier": "WARM"} and d["StreamARN"] == arn
    version = kv.describe_stream(StreamARN=arn)["StreamInfo"]["Version"]
    kv.update_stream_storage_configuration(StreamARN=arn, CurrentVersion=version,
                                           StreamStorageConfiguration={"DefaultStorageTier": "HOT"})
    assert kv.describe_stream_storage_configuration(StreamARN=arn)["StreamStorageConfiguration"]["DefaultStorageTier"] == "HOT"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kv.update_stream_storage_configuration(StreamARN=arn, CurrentVersion=version,
                                               StreamStorageConfiguration={"DefaultStorageTier": "WARM"})
    assert code(e) == "VersionMismatchException", "the version moved with the first update"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kv.create_stream(StreamName="bad-tier", StreamStorageConfiguration={"DefaultStorageTier": "COLD"})
    assert code(e) == "InvalidArgumentException"


def test_mapped_resources_name_the_channel_recording_into_a_stream(server):
    kv = server.client("kinesisvideo")
    stream = kv.create_stream(StreamName="recorded", DataRetentionInHours=24)["StreamARN"]
    assert kv.describe_mapped_resource_configuration(StreamARN=stream)["MappedResourceConfigurationList"] == []
    channel = kv.create_signaling_channel(ChannelName="doorbell")["ChannelARN"]
    kv.update_media_storage_configuration(ChannelARN=channel,
                                          MediaStorageConfiguration={"Status": "ENABLED", "StreamARN": stream})
    mapped = kv.describe_mapped_resource_configuration(StreamName="recorded")["MappedResourceConfigurationList"]
    assert [m["ARN"] for m in mapped] == [channel] and mapped[0]["Type"]
    pages = list(kv.get_paginator("describe_mapped_resource_configuration").paginate(StreamARN=stream))
    assert [m["ARN"] for p in pages for m in p["MappedResourceConfigurationList"]] == [channel]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kv.describe_mapped_resource_configuration(StreamName="nope")
    assert code(e) == "ResourceNotFoundException"


def edge_config(secret=SECRET, uri_type="RTSP_URI"):
    return {
        "HubDeviceArn": HUB,
        "RecorderConfig": {"MediaSourceConfig": {"MediaUriSecretArn": secret, "MediaUriType": uri_type},
                           "ScheduleConfig": {"ScheduleExpression": "0 0/5 * * * ?", "DurationInSeconds": 300}},
        "UploaderConfig": {"ScheduleConfig": {"ScheduleExpression": "0 0/5 * * * ?", "DurationInSeconds": 300}},
        "DeletionConfig": {"EdgeRetentionInHours": 48, "DeleteAfterUpload": True,
                           "LocalSizeConfig": {"MaxLocalMediaSizeInMB": 1024, "StrategyOnFullSize": "DELETE_OLDEST_MEDIA"}},
    }


def test_edge_configurations_are_refused_clearly_when_they_cannot_run(server):
    kv = server.client("kinesisvideo")
    kv.create_stream(StreamName="no-retention", DataRetentionInHours=0)
    kv.create_stream(StreamName="edge-bad", DataRetentionInHours=24)
    cases = [
        ("no-retention", edge_config(), "NoDataRetentionException"),
        ("edge-bad", edge_config(uri_type="FILE_URI"), "InvalidArgumentException"),
        ("edge-bad", edge_config(secret="arn:aws:secretsmanager:us-east-1:123456789012:secret:unknown"),
         "InvalidArgumentException"),
        ("edge-bad", dict(edge_config(), HubDeviceArn="not-an-arn"), "InvalidArgumentException"),
    ]
    for stream, config, expected in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            kv.start_edge_configuration_update(StreamName=stream, EdgeConfig=config)
        assert code(e) == expected, (config, e.value.response)
    for call in (kv.describe_edge_configuration, kv.delete_edge_configuration):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(StreamName="edge-bad")
        assert code(e) == "StreamEdgeConfigurationNotFoundException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert kv.list_edge_agent_configurations(HubDeviceArn=HUB)["EdgeConfigs"] == []


@pytest.mark.skipif(not HAVE_GST_PY, reason="GStreamer's RTSP server for Python is not installed")
def test_an_edge_configuration_records_the_camera_its_secret_names(tmp_path):
    port = free_port()
    config = tmp_path / "kinescope.toml"
    config.write_text(f'[secrets]\n"{SECRET}" = "rtsp://viewer:s3cret-pass@127.0.0.1:{port}/edge"\n')
    cam = Camera(port, "edge", ("viewer", "s3cret-pass")).start()
    server = Server(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        kv = server.client("kinesisvideo")
        arn = kv.create_stream(StreamName="door", DataRetentionInHours=24)["StreamARN"]
        started = kv.start_edge_configuration_update(StreamARN=arn, EdgeConfig=edge_config())
        assert started["SyncStatus"] == "IN_SYNC" and started["StreamName"] == "door"
        assert started["EdgeConfig"]["RecorderConfig"]["MediaSourceConfig"]["MediaUriSecretArn"] == SECRET

        def recording():
            d = kv.describe_edge_configuration(StreamName="door")
            st = d.get("EdgeAgentStatus", {}).get("LastRecorderStatus", {})
            return st.get("RecorderStatus") == "SUCCESS" and "Recording" in st.get("JobStatusDetails", "") and d

        d = wait_until(recording, timeout=30)
        assert d, kv.describe_edge_configuration(StreamName="door")
        assert d["EdgeConfig"]["DeletionConfig"]["EdgeRetentionInHours"] == 48
        am = server.client("kinesis-video-archived-media")
        now = time.time()
        frags = wait_until(lambda: am.list_fragments(StreamName="door", FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": now - 300, "EndTimestamp": now + 300}})["Fragments"], timeout=30)
        assert frags, "the camera was not recorded into the stream"
        listed = kv.list_edge_agent_configurations(HubDeviceArn=HUB)["EdgeConfigs"]
        assert [c["StreamName"] for c in listed] == ["door"] and listed[0]["StreamARN"] == arn
        other_hub = HUB.replace("hub-1", "hub-2")
        assert kv.list_edge_agent_configurations(HubDeviceArn=other_hub)["EdgeConfigs"] == []
        assert "s3cret-pass" not in "".join(server.log), "the secret's password never reaches the log"

        # The configuration survives a restart; deleting it stops the pull.
        port_http = server.port
        server.stop()
        server.start(port_http)
        kv = server.client("kinesisvideo")
        assert kv.describe_edge_configuration(StreamName="door")["SyncStatus"] == "IN_SYNC"
        kv.delete_edge_configuration(StreamARN=arn)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            kv.describe_edge_configuration(StreamName="door")
        assert code(e) == "StreamEdgeConfigurationNotFoundException"
    finally:
        server.stop()
        cam.stop()
