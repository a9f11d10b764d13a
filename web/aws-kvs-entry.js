// What the pages take from the AWS SDK for JavaScript v3, bundled by build.mjs (esbuild)
// into dist/vendor/aws-kvs.js as the global `AwsKvs`: the Kinesis Video clients (the
// signalling page) and the SDK's SigV4 signer (the watch page signs its own requests).
export {
  KinesisVideoClient,
  CreateSignalingChannelCommand,
  DescribeSignalingChannelCommand,
  GetSignalingChannelEndpointCommand,
} from '@aws-sdk/client-kinesis-video';
export { KinesisVideoSignalingClient, GetIceServerConfigCommand } from '@aws-sdk/client-kinesis-video-signaling';
export { SignatureV4 } from '@smithy/signature-v4';
export { Sha256 } from '@smithy/core/checksum';
