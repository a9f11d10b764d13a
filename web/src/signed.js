// fetch() signed with SigV4 for service kinesisvideo, with the AWS SDK's own signer
// (window.AwsKvs, bundled by web/build.mjs): what the watch page and the signalling page
// both send signed.
'use strict';

// `url` may be relative to this page; `credentials` is { accessKeyId, secretAccessKey }.
async function signedFetch(url, { method, headers, body }, credentials, region) {
  const u = new URL(url, location.origin);
  const signer = new AwsKvs.SignatureV4({ credentials, region, service: 'kinesisvideo', sha256: AwsKvs.Sha256 });
  const signed = await signer.sign({
    method,
    protocol: u.protocol,
    hostname: u.hostname,
    port: u.port ? Number(u.port) : undefined,
    path: u.pathname,
    query: Object.fromEntries(u.searchParams),
    headers: { ...headers, host: u.host },
    body,
  });
  const sent = { ...signed.headers };
  delete sent.host; // the browser sets it (to the same value)
  return fetch(u, { method, headers: sent, body });
}
