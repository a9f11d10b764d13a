// The AWS SDK for JavaScript v3 clients of the services beside Kinesis, each with its
// defaults and nothing but an endpoint override: STS (GetCallerIdentity, GetSessionToken,
// AssumeRole, and the role's credentials used for the calls that follow), SQS (its JSON
// protocol), Firehose and Kinesis Video (control plane and signalling). Prints one JSON
// object of what it saw; tests/integration/test_http2.py asserts on it.
//
//   node web/tests/sdk_services.mjs ENDPOINT REGION KEY SECRET
// An https:// endpoint's certificate comes in through NODE_EXTRA_CA_CERTS.
import { STSClient, GetCallerIdentityCommand, GetSessionTokenCommand, AssumeRoleCommand } from '@aws-sdk/client-sts';
import {
  SQSClient, CreateQueueCommand, SendMessageCommand, ReceiveMessageCommand, DeleteMessageCommand,
  GetQueueAttributesCommand, DeleteQueueCommand,
} from '@aws-sdk/client-sqs';
import {
  FirehoseClient, CreateDeliveryStreamCommand, DescribeDeliveryStreamCommand, PutRecordBatchCommand,
  DeleteDeliveryStreamCommand,
} from '@aws-sdk/client-firehose';
import {
  KinesisVideoClient, CreateStreamCommand, DescribeStreamCommand, GetDataEndpointCommand, CreateSignalingChannelCommand,
  GetSignalingChannelEndpointCommand, DeleteSignalingChannelCommand, DeleteStreamCommand,
} from '@aws-sdk/client-kinesis-video';
import { KinesisVideoSignalingClient, GetIceServerConfigCommand } from '@aws-sdk/client-kinesis-video-signaling';

const [endpoint, region, accessKeyId, secretAccessKey] = process.argv.slice(2);
const out = {};
const clients = [];
function make(Client, credentials) {
  const c = new Client({ endpoint, region, credentials });
  clients.push(c);
  out.handlers = { ...out.handlers, [Client.name]: c.config.requestHandler?.constructor?.name };
  return c;
}

try {
  const sts = make(STSClient, { accessKeyId, secretAccessKey });
  const me = await sts.send(new GetCallerIdentityCommand({}));
  out.account = me.Account;
  const session = await sts.send(new GetSessionTokenCommand({ DurationSeconds: 900 }));
  out.sessionKey = session.Credentials.AccessKeyId.slice(0, 4);
  const role = await sts.send(new AssumeRoleCommand({
    RoleArn: `arn:aws:iam::${me.Account}:role/js-sdk`, RoleSessionName: 'js',
  }));
  const roleCredentials = {
    accessKeyId: role.Credentials.AccessKeyId,
    secretAccessKey: role.Credentials.SecretAccessKey,
    sessionToken: role.Credentials.SessionToken,
  };
  const asRole = await make(STSClient, roleCredentials).send(new GetCallerIdentityCommand({}));
  out.roleArn = asRole.Arn;

  // SQS, signed with the role's temporary credentials.
  const sqs = make(SQSClient, roleCredentials);
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'js-sdk' }));
  await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'hello' }));
  const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 5, MaxNumberOfMessages: 1 }));
  out.messages = (got.Messages || []).map((m) => m.Body);
  await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: got.Messages[0].ReceiptHandle }));
  const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['All'] }));
  out.queueArn = attrs.Attributes.QueueArn;
  await sqs.send(new DeleteQueueCommand({ QueueUrl }));

  // Firehose.
  const firehose = make(FirehoseClient, { accessKeyId, secretAccessKey });
  await firehose.send(new CreateDeliveryStreamCommand({
    DeliveryStreamName: 'js-sdk',
    ExtendedS3DestinationConfiguration: {
      RoleARN: `arn:aws:iam::${me.Account}:role/firehose`, BucketARN: 'arn:aws:s3:::js-sdk',
      BufferingHints: { SizeInMBs: 1, IntervalInSeconds: 0 },
    },
  }));
  const batch = await firehose.send(new PutRecordBatchCommand({
    DeliveryStreamName: 'js-sdk', Records: [{ Data: Buffer.from('a\n') }, { Data: Buffer.from('b\n') }],
  }));
  out.firehoseFailed = batch.FailedPutCount;
  const fd = await firehose.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: 'js-sdk' }));
  out.firehoseStatus = fd.DeliveryStreamDescription.DeliveryStreamStatus;
  await firehose.send(new DeleteDeliveryStreamCommand({ DeliveryStreamName: 'js-sdk' }));

  // Kinesis Video: a stream, its data endpoint, a signalling channel and its ICE servers.
  const kvs = make(KinesisVideoClient, { accessKeyId, secretAccessKey });
  const { StreamARN } = await kvs.send(new CreateStreamCommand({ StreamName: 'js-sdk', DataRetentionInHours: 1 }));
  const sd = await kvs.send(new DescribeStreamCommand({ StreamARN }));
  out.videoStatus = sd.StreamInfo.Status;
  const de = await kvs.send(new GetDataEndpointCommand({ StreamARN, APIName: 'GET_MEDIA' }));
  out.dataEndpoint = de.DataEndpoint;
  const { ChannelARN } = await kvs.send(new CreateSignalingChannelCommand({ ChannelName: 'js-sdk' }));
  const ep = await kvs.send(new GetSignalingChannelEndpointCommand({
    ChannelARN, SingleMasterChannelEndpointConfiguration: { Protocols: ['WSS', 'HTTPS'], Role: 'MASTER' },
  }));
  const https = ep.ResourceEndpointList.find((e) => e.Protocol === 'HTTPS').ResourceEndpoint;
  const signaling = new KinesisVideoSignalingClient({ endpoint: https, region, credentials: { accessKeyId, secretAccessKey } });
  clients.push(signaling);
  const ice = await signaling.send(new GetIceServerConfigCommand({ ChannelARN }));
  out.iceServers = ice.IceServerList.length;
  await kvs.send(new DeleteSignalingChannelCommand({ ChannelARN }));
  await kvs.send(new DeleteStreamCommand({ StreamARN }));
  out.ok = true;
} catch (e) {
  out.error = `${e.name}: ${e.message}`;
} finally {
  for (const c of clients) c.destroy();
}
console.log(JSON.stringify(out));
