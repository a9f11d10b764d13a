// What the signalling page takes from the AWS SDK for JavaScript v3, bundled by
// build.mjs (esbuild) into dist/vendor/aws-kvs.js as the global `AwsKvs`.
export {
  KinesisVideoClient,
  CreateSignalingChannelCommand,
  DescribeSignalingChannelCommand,
  GetSignalingChannelEndpointCommand,
} from '@aws-sdk/client-kinesis-video';
export { KinesisVideoSignalingClient, GetIceServerConfigCommand } from '@aws-sdk/client-kinesis-video-signaling';
