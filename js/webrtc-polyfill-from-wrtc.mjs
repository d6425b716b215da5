// Stands in for the npm package webrtc-polyfill when Node runs the reference clients
// (see resolve-hooks.mjs): the same names, from @roamhq/wrtc.
//
// Why: @thaunknown/simple-peer (the WebRTC peer of bittorrent-tracker and WebTorrent)
// imports webrtc-polyfill, which in Node loads node-datachannel's compiled module at
// import time, even when the client is given another WebRTC implementation (its `wrtc`
// option). node-datachannel's npm package ships no binary: its install script downloads
// one from GitHub or compiles libdatachannel with cmake. @roamhq/wrtc's binary comes from
// the npm registry itself, as a platform package (@roamhq/wrtc-linux-x64 ...).
import wrtc from '@roamhq/wrtc'

export const {
  RTCPeerConnection,
  RTCSessionDescription,
  RTCIceCandidate,
  RTCIceTransport,
  RTCDataChannel,
  RTCSctpTransport,
  RTCDtlsTransport,
  MediaStream,
  MediaStreamTrack
} = wrtc
export default wrtc
