// The reference WebTorrent tracker, npm bittorrent-tracker's Server, for `python -m bench`:
//   node js/bench-tracker.mjs PORT
// serves HTTP and WebSocket (ws://127.0.0.1:PORT/) on 127.0.0.1:PORT, no UDP and no
// stats page, with the package's defaults otherwise. Warnings (bad requests) go to stderr,
// the first few of them. SIGTERM closes it.
import { register } from 'node:module'

// The package's index also loads its client, whose WebRTC import needs the same hook as
// tracker-clients.mjs (see webrtc-polyfill-from-wrtc.mjs); the server itself uses none.
register('./resolve-hooks.mjs', import.meta.url)
const { Server } = await import('bittorrent-tracker')

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node bench-tracker.mjs PORT')
  process.exit(2)
}
const server = new Server({ udp: false, http: true, ws: true, stats: false, trustProxy: false })
let warnings = 0
server.on('warning', err => {
  warnings += 1
  if (warnings <= 20) console.error(`warning: ${err.message}`)
})
server.on('error', err => {
  console.error(`error: ${err.message}`)
  process.exit(1)
})
server.listen(port, '127.0.0.1', () => console.error(`bittorrent-tracker listening on 127.0.0.1:${port}`))
process.on('SIGTERM', () => {
  console.error(`${warnings} warning(s)`)
  server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
})
