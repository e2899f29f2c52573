'use strict';
// Node `ws` peer for the wsmachine trace corpus (src/bin/record.rs).
//   node node_peer.js server PORT COMPRESS      serve scenarios by path; prints "ready"
//   node node_peer.js client URL SCENARIO COMPRESS
// COMPRESS is "deflate" or "none". NODE_PATH must point at node_modules with `ws`.
//
// What the peer concludes is printed as records, `TAG key=value …` with
// percent-encoded values (as peers/node/common.js):
//   server: one `report path=… rcvd_code=… rcvd_reason=… checks=… error=…`
//           per connection, when it closes;
//   client: `result NAME=ok|what went wrong` per check, then
//           `close rcvd_code=… rcvd_reason=…`, then `done` (exit 0); an
//           error prints `error message=…` and exits 1.
const WebSocket = require('ws');

const [mode, target, a3, a4] = process.argv.slice(2);
const TIMEOUT = 10000;

function record(tag, fields) {
  const parts = [tag];
  for (const [k, v] of Object.entries(fields)) parts.push(`${k}=${encodeURIComponent(String(v))}`);
  process.stdout.write(parts.join(' ') + '\n');
}

function deflate(arg) {
  return arg === 'deflate' ? { threshold: 0 } : false;
}

function same(a, b) {
  return Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : a === b;
}

if (mode === 'server') {
  const wss = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: Number(target), perMessageDeflate: deflate(a3) });
  wss.on('listening', () => console.log('ready'));
  wss.on('connection', (ws, req) => {
    const path = req.url;
    const failed = [];
    let error = '';
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', (e) => { error = e.message; });
    ws.on('close', (code, reason) => {
      record('report', { path, rcvd_code: code, rcvd_reason: reason.toString(), checks: failed.join(',') || 'ok', error });
    });
    if (path === '/close') {
      ws.send('bye soon');
      ws.close(1001, 'going away');
    } else if (path === '/ping') {
      const timer = setTimeout(() => failed.push('no-pong'), TIMEOUT);
      ws.on('pong', () => { clearTimeout(timer); ws.send('pong received'); });
      ws.ping('are you there');
    } else if (path === '/fragments') {
      ws.send('frag', { fin: false });
      ws.send('ment', { fin: false });
      ws.send('ed', { fin: true });
    } else if (path === '/badutf8') {
      ws._socket.write(Buffer.from([0x81, 0x02, 0xc3, 0x28]));
    } else if (path === '/badframe') {
      ws._socket.write(Buffer.from([0x83, 0x00]));
    }
  });
  setTimeout(() => process.exit(0), 600000);
} else {
  const scenario = a3;
  const ws = new WebSocket(target, { perMessageDeflate: deflate(a4) });
  const replies = [];
  let waiting = null;
  const fail = (msg) => { record('error', { message: msg }); process.exit(1); };
  const timer = setTimeout(() => fail('timeout'), TIMEOUT);
  ws.on('message', (data, isBinary) => {
    const m = isBinary ? data : data.toString();
    if (waiting) { const w = waiting; waiting = null; w(m); } else replies.push(m);
  });
  const next = () => new Promise((res) => { if (replies.length) res(replies.shift()); else waiting = res; });
  const check = (name, got, want) => {
    record('result', { [name]: same(got, want) ? 'ok' : `got ${String(got).slice(0, 60)} instead of ${String(want).slice(0, 60)}` });
  };
  ws.on('close', (code, reason) => {
    clearTimeout(timer);
    // A message the scenario did not wait for is a failure.
    if (replies.length) record('result', { unexpected: String(replies[0]).slice(0, 60) });
    record('close', { rcvd_code: code, rcvd_reason: reason.toString() });
    console.log('done');
    process.exit(0);
  });
  ws.on('error', (e) => fail(e.message));
  ws.on('open', async () => {
    if (scenario === 'echo') {
      ws.send('hello'); check('echo.text', await next(), 'hello');
      ws.send(Buffer.from([0, 1, 2, 255])); check('echo.binary', await next(), Buffer.from([0, 1, 2, 255]));
      ws.send('Hel', { fin: false }); ws.send('lo, ', { fin: false }); ws.send('fragments', { fin: true });
      check('echo.fragmented', await next(), 'Hello, fragments');
      ws.send('compressible '.repeat(40)); check('echo.compressible', await next(), 'compressible '.repeat(40));
      await new Promise((res) => { ws.once('pong', res); ws.ping('p1'); });
      record('result', { pong: 'ok' });
      ws.close(1000, 'done');
    } else if (scenario === 'server-close') {
      ws.send('close me');
    } else if (scenario === 'ping') {
      ws.send('ping me');
      check('ping.text', await next(), 'hello from server');
    } else if (scenario === 'badutf8') {
      ws._socket.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28]));
    } else {
      fail(`unknown scenario ${scenario}`);
    }
  });
}
