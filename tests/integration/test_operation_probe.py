"""Every operation in botocore's models of the services Kinescope speaks, called once on
a fresh server with an empty request: each must be answered by the operation (a result,
or that operation's own error such as a validation or not-found error), never as an
unknown operation or an unrouted path."""
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

SERVICES = [
    "kinesisvideo",
    "kinesis-video-media",
    "kinesis-video-archived-media",
    "kinesis-video-signaling",
    "kinesis-video-webrtc-storage",
    "sqs",
    "kinesis",
    "firehose",
]
# STS is left out: beside GetCallerIdentity, GetSessionToken, AssumeRole and
# GetAccessKeyInfo (test_sts.py) its model is identity federation (SAML, web identity,
# root, delegated tokens), which Kinescope, holding no identity provider, refuses with
# STS's InvalidAction.

# What an unanswered operation looks like, per protocol.
UNKNOWN = {"UnknownOperationException", "UnknownOperation", "InvalidAction", "UnrecognizedClientException",
           "NotFound", "404", "InvalidAction.NotImplemented", "AWS.SimpleQueueService.UnsupportedOperation"}


def unanswered(service, op, err):
    code = err.response.get("Error", {}).get("Code", "")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = err.response.get("Error", {}).get("Message", "")
    if code in UNKNOWN or "not supported by Kinescope" in message:
        return f"{code}: {message}"
    # A rest-json path nothing routes answers 404 without the operation's own code.
    if status == 404 and not code.endswith("Exception") and code not in ("ResourceNotFound",):
        return f"HTTP 404 {code}: {message}"
    return None


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_in_the_model_is_answered(server, service):
    cfg = Config(parameter_validation=False, retries={"total_max_attempts": 1}, read_timeout=15,
                 connect_timeout=5)
    client = boto3.client(service, endpoint_url=server.url, region_name="us-east-1",
                          aws_access_key_id="anonymous", aws_secret_access_key="anonymous", config=cfg)
    missing = []
    ops = client.meta.service_model.operation_names
    assert ops, service
    methods = {api: name for name, api in client.meta.method_to_api_mapping.items()}
    for op in ops:
        method = getattr(client, methods[op])
        try:
            out = method()
            body = out.get("Payload") or out.get("Body")
            if body is not None:
                body.close()
        except botocore.exceptions.ClientError as e:
            why = unanswered(service, op, e)
            if why:
                missing.append(f"{op}: {why}")
        except (botocore.exceptions.ParamValidationError, botocore.exceptions.EndpointResolutionError):
            # Refused by the client before sending (a required URI or host label).
            continue
        except botocore.exceptions.BotoCoreError as e:
            missing.append(f"{op}: {type(e).__name__}: {e}")
    assert not missing, f"{service}: {len(missing)} of {len(ops)} operations unanswered:\n" + "\n".join(missing)
