// A Node module-resolution hook: `webrtc-polyfill` resolves to
// webrtc-polyfill-from-wrtc.mjs (why: see that file). Registered with
// module.register() by the scripts that load bittorrent-tracker.
const replacement = new URL('./webrtc-polyfill-from-wrtc.mjs', import.meta.url).href

export async function resolve (specifier, context, nextResolve) {
  if (specifier === 'webrtc-polyfill') return { url: replacement, shortCircuit: true }
  return nextResolve(specifier, context)
}
