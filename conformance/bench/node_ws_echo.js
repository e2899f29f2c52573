'use strict';
// Node `ws` echo server for the compressed echo benchmark (issue 15).
//
// usage: node node_ws_echo.js (deflate|none) HOST:PORT
// (NODE_PATH must reach `ws`: common.sh points it at target/interop-node.)
// Prints `listening on ws://HOST:PORT` once ready. With deflate,
// perMessageDeflate uses ws's defaults except the threshold, set to 128
// bytes like wsmachine's min_compress_size (ws's default, 1024, is met by
// the 1 KiB messages anyway): windows of 15 bits, zlib's default level and
// memLevel, context takeover. Every message is echoed as it came (text
// stays text). Exits by itself after 1 hour; the benchmark ends it by PID.
const { WebSocketServer } = require('ws');

const deflate = process.argv[2] === 'deflate';
const [host, port] = (process.argv[3] || '127.0.0.1:9410').split(':');
const wss = new WebSocketServer({
  host,
  port: Number(port),
  perMessageDeflate: deflate ? { threshold: 128 } : false,
  maxPayload: 16 << 20,
});
wss.on('listening', () => {
  process.stdout.write(`listening on ws://${host}:${wss.address().port}\n`);
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
setTimeout(() => process.exit(0), 3600 * 1000);
