'use strict';
// Node `ws` client driven by conformance/tests/interop_node.rs.
//
// usage: node client.js URL (deflate|none) SCENARIO
//   echo          text and binary at every size, a non-ASCII text, fragmented
//                 text and binary sends, a ping, then close 4001 "node done"
//   server-close  sends "close-me"; the server closes with 4002 "server bye"
//   mirror        sends every message back as it came (text as text, binary
//                 as binary) until the server closes; reports how many
// Prints `result key=value` records and `result done=1` last.
const WebSocket = require('ws');
const { SIZES, UNICODE_TEXT, textPayload, binaryPayload, result } = require('./common');

const TIMEOUT_MS = 20000;
const [url, compression, scenario] = process.argv.slice(2);

const ws = new WebSocket(url, {
  perMessageDeflate: compression === 'deflate' ? { threshold: 0 } : false,
  maxPayload: 16 << 20,
  handshakeTimeout: TIMEOUT_MS,
});

// Incoming messages and the close, as promises in arrival order.
const queue = [];
const waiters = [];
let closed = null;
ws.on('message', (data, isBinary) => {
  const msg = { data, isBinary };
  if (waiters.length) waiters.shift().resolve(msg); else queue.push(msg);
});
const closedPromise = new Promise((resolve) => {
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    for (const w of waiters.splice(0)) w.reject(new Error(`closed ${code}`));
    resolve(closed);
  });
});
ws.on('error', (e) => result('ws_error', e.message));
// The extensions header as the server sent it (`ws.extensions` has only
// the names).
let accepted = '';
ws.on('upgrade', (res) => { accepted = res.headers['sec-websocket-extensions'] || ''; });

function next() {
  if (queue.length) return Promise.resolve(queue.shift());
  if (closed) return Promise.reject(new Error(`closed ${closed.code}`));
  return new Promise((resolve, reject) => {
    const w = { resolve, reject };
    waiters.push(w);
    setTimeout(() => reject(new Error('timeout waiting for a message')), TIMEOUT_MS).unref();
  });
}

function send(data, opts) {
  return new Promise((resolve, reject) => ws.send(data, opts, (e) => (e ? reject(e) : resolve())));
}

async function echoCheck(name, payload, isBinary) {
  await send(payload, { binary: isBinary });
  const got = await next();
  const want = Buffer.from(payload);
  if (got.isBinary !== isBinary) result(name, `binary flag ${got.isBinary}`);
  else if (!want.equals(got.data)) result(name, `length ${got.data.length} instead of ${want.length} or content differs`);
  else result(name, 'ok');
}

async function run() {
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  result('version', require('ws/package.json').version);
  result('extensions', ws.extensions);
  result('accepted_extensions', accepted);
  if (scenario === 'echo') {
    for (const n of SIZES) {
      await echoCheck(`text.${n}`, textPayload(n), false);
      await echoCheck(`binary.${n}`, binaryPayload(n), true);
    }
    await echoCheck('text.unicode', UNICODE_TEXT, false);
    // Fragmented sends: fin:false keeps the message open.
    await send('frag-one ', { binary: false, fin: false });
    await send('frag-two ', { binary: false, fin: false });
    await send('frag-three', { binary: false, fin: true });
    let got = await next();
    result('fragmented.text', !got.isBinary && got.data.toString() === 'frag-one frag-two frag-three' ? 'ok' : `got ${got.data.toString().slice(0, 80)}`);
    const big = binaryPayload(70000);
    await send(Buffer.from([0, 1]), { binary: true, fin: false });
    await send(big, { binary: true, fin: true });
    got = await next();
    result('fragmented.binary', got.isBinary && Buffer.concat([Buffer.from([0, 1]), big]).equals(got.data) ? 'ok' : `length ${got.data.length}`);
    // UTF-8 characters split across fragments.
    const u = Buffer.from(UNICODE_TEXT);
    await send(u.subarray(0, 2), { binary: false, fin: false });
    await send(u.subarray(2, 9), { binary: false, fin: false });
    await send(u.subarray(9), { binary: false, fin: true });
    got = await next();
    result('fragmented.split_utf8', !got.isBinary && got.data.toString() === UNICODE_TEXT ? 'ok' : 'mismatch');
    const pong = new Promise((resolve) => ws.once('pong', resolve));
    ws.ping(Buffer.from('node-ping'));
    const payload = await Promise.race([pong, new Promise((_, rej) => setTimeout(() => rej(new Error('no pong')), TIMEOUT_MS).unref())]);
    result('ping', payload.toString() === 'node-ping' ? 'ok' : `pong payload ${payload}`);
    ws.close(4001, 'node done');
  } else if (scenario === 'server-close') {
    await send('close-me', { binary: false });
  } else if (scenario === 'mirror') {
    let n = 0;
    for (;;) {
      let msg;
      try {
        msg = await next();
      } catch (e) {
        if (closed) break;
        throw e;
      }
      await send(msg.data, { binary: msg.isBinary });
      n++;
    }
    result('mirrored', n);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  const c = await closedPromise;
  result('close.rcvd_code', c.code);
  result('close.rcvd_reason', c.reason);
  result('done', 1);
}

const deadline = setTimeout(() => { result('error', 'overall timeout'); process.exit(2); }, 60000);
run().then(() => { clearTimeout(deadline); }, (e) => { result('error', e.stack || String(e)); process.exit(1); });
