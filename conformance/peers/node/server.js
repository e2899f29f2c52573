'use strict';
// Node `ws` server driven by conformance/tests/interop_node.rs.
//
// usage: node server.js (deflate|none)
// Binds 127.0.0.1 on a free port, prints `listening on ws://127.0.0.1:PORT`.
// permessage-deflate (when on) has threshold 0: every message is compressed.
// Behaviour by path: /echo... echoes; /close4000... sends "hello" then closes
// with 4000 "bye"; /ping... pings with "srv-ping", sends "pong-ok" when the
// pong arrives, then echoes. Each finished connection prints
//   report path=... messages=N bytes=N extensions=... rcvd_code=N rcvd_reason=... pong=...
const { WebSocketServer } = require('ws');
const { record } = require('./common');

const deflate = process.argv[2] === 'deflate';
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
  maxPayload: 16 << 20,
});

wss.on('listening', () => {
  record('version', { ws: require('ws/package.json').version });
  process.stdout.write(`listening on ws://127.0.0.1:${wss.address().port}\n`);
});

wss.on('connection', (ws, req) => {
  const path = req.url;
  let messages = 0;
  let bytes = 0;
  let pong = 'n/a';
  ws.on('message', (data, isBinary) => {
    messages += 1;
    bytes += data.length;
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => {
    record('report', {
      path, messages, bytes, extensions: ws.extensions, rcvd_code: code,
      rcvd_reason: reason.toString(), pong,
    });
  });
  ws.on('error', (e) => record('report_error', { path, error: e.message }));
  if (path.startsWith('/close4000')) {
    ws.send('hello');
    ws.close(4000, 'bye');
  } else if (path.startsWith('/ping')) {
    ws.once('pong', (p) => { pong = p.toString() === 'srv-ping' ? 'ok' : `payload ${p}`; ws.send(`pong-${pong}`); });
    ws.ping(Buffer.from('srv-ping'));
  }
});

// Ends when the test kills this process by PID, or after 10 minutes at most.
setTimeout(() => process.exit(0), 600000);
