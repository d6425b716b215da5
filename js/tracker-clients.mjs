// Two clients of the reference WebTorrent tracker client (npm bittorrent-tracker), with
// WebRTC from @roamhq/wrtc, go through a swarm's life on a WebSocket tracker:
//   node js/tracker-clients.mjs ws://127.0.0.1:PORT INFO_HASH_HEX [SECONDS_PER_STEP]
// The seeder announces, then the leecher; the tracker relays the leecher's offer to the
// seeder and the seeder's answer back; the two WebRTC peers connect and exchange a message;
// both scrape; the leecher stops (event=stopped) and leaves; the seeder closes its socket
// without stopping. Whatever each client saw is printed as one JSON object on stdout
// (tests/e2e/test_bittorrent_tracker_client.py checks it); a step that times out ends the
// run with exit status 1 and `error` set.
//
// The client pools its WebSocket per announce URL, so two clients of one process given one
// URL would share a socket; the seeder uses `/announce` and the leecher `/`, both of which
// the tracker serves, so each client has a socket of its own, as two browsers would.

import { register } from 'node:module'
import wrtc from '@roamhq/wrtc'

// WebRTC is @roamhq/wrtc's, also where bittorrent-tracker's peer library imports its own
// (see webrtc-polyfill-from-wrtc.mjs); so the client is imported after the hook is in.
register('./resolve-hooks.mjs', import.meta.url)
const { default: Client } = await import('bittorrent-tracker')

const [base, infoHash, stepArg] = process.argv.slice(2)
if (!base || !/^[0-9a-f]{40}$/.test(infoHash || '')) {
  console.error('usage: node tracker-clients.mjs ws://host:port INFO_HASH_HEX [SECONDS]')
  process.exit(2)
}
const stepSeconds = Number(stepArg || 10)
const seen = { steps: [], seeder: { updates: [], scrapes: [], peers: [], warnings: [] }, leecher: { updates: [], scrapes: [], peers: [], warnings: [] } }

function finish (error) {
  if (error) seen.error = String(error && error.stack ? error.stack : error)
  process.stdout.write(JSON.stringify(seen) + '\n', () => process.exit(error ? 1 : 0))
}

function step (name, promise) {
  return Promise.race([
    promise.then(value => { seen.steps.push(name); return value }),
    new Promise((resolve, reject) => setTimeout(
      () => reject(new Error(`step "${name}": nothing after ${stepSeconds} s`)), stepSeconds * 1000))
  ])
}

function next (emitter, event, test = () => true) {
  return new Promise(resolve => {
    const listener = (...args) => {
      if (!test(...args)) return
      emitter.removeListener(event, listener)
      resolve(args[0])
    }
    emitter.on(event, listener)
  })
}

function makeClient (role, path, peerIdText, left) {
  const client = new Client({
    infoHash,
    peerId: Buffer.from(peerIdText.padEnd(20, '-')).toString('hex'),
    announce: [base + path],
    port: 6881,
    wrtc,
    rtcConfig: { iceServers: [] }, // no STUN server: the peers meet on this machine
    getAnnounceOpts: () => ({ uploaded: 0, downloaded: 0, left })
  })
  const record = seen[role]
  client.on('update', data => record.updates.push({ complete: data.complete, incomplete: data.incomplete, interval: data.interval, infoHash: data.infoHash }))
  client.on('scrape', data => record.scrapes.push({ complete: data.complete, incomplete: data.incomplete, downloaded: data.downloaded, infoHash: data.infoHash }))
  client.on('warning', err => record.warnings.push(err.message))
  client.on('error', err => record.warnings.push('error: ' + err.message))
  client.on('peer', peer => record.peers.push(peer.id))
  return client
}

// A WebRTC peer that connects, sends `text` over its data channel and resolves with what
// the other side sent.
function talk (client, role, text) {
  return next(client, 'peer').then(peer => new Promise((resolve, reject) => {
    peer.once('error', reject)
    peer.once('connect', () => {
      seen[role].connected = true
      peer.send(text)
    })
    peer.once('data', data => resolve(Buffer.from(data).toString()))
  }))
}

async function main () {
  const seeder = makeClient('seeder', '/announce', '-SE0001-seeder', 0)
  const leecher = makeClient('leecher', '/', '-LE0001-leecher', 1000)

  const seederUpdate = next(seeder, 'update')
  seeder.start()
  await step('seeder announced', seederUpdate)

  const seederHeard = talk(seeder, 'seeder', 'hello from the seeder')
  const leecherHeard = talk(leecher, 'leecher', 'hello from the leecher')
  const leecherUpdate = next(leecher, 'update')
  leecher.start()
  await step('leecher announced', leecherUpdate)
  seen.seeder.heard = await step('seeder got a message over WebRTC', seederHeard)
  seen.leecher.heard = await step('leecher got a message over WebRTC', leecherHeard)

  const seederScrape = next(seeder, 'scrape')
  seeder.scrape()
  await step('seeder scraped', seederScrape)
  const leecherScrape = next(leecher, 'scrape')
  leecher.scrape()
  await step('leecher scraped', leecherScrape)

  // The leecher leaves with event=stopped; the tracker answers it like any announce.
  const stopped = next(leecher, 'update')
  leecher.stop()
  await step('leecher stopped', stopped)
  leecher.destroy()
  const afterStop = next(seeder, 'scrape')
  seeder.scrape()
  await step('seeder scraped after the stop', afterStop)

  // The seeder closes its socket without stopping: the tracker must drop it all the same.
  await step('seeder closed', new Promise(resolve => seeder.destroy(resolve)))
}

main().then(() => finish(null), finish)
