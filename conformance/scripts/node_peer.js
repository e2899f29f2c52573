// Node `ws` peer for the wsmachine trace corpus (see src/bin/record.rs).
//   node node_peer.js server PORT COMPRESS      serve scenarios by path; prints "ready"
//   node node_peer.js client URL SCENARIO COMPRESS
// COMPRESS is "deflate" or "none". NODE_PATH must point at node_modules with `ws`.
const WebSocket = require('ws');

const [mode, target, a3, a4] = process.argv.slice(2);

function deflate(arg) {
  return arg === 'deflate' ? { threshold: 0 } : false;
}

if (mode === 'server') {
  const wss = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: Number(target), perMessageDeflate: deflate(a3) });
  wss.on('listening', () => console.log('ready'));
  wss.on('connection', (ws, req) => {
    const path = req.url;
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    if (path === '/close') {
      ws.send('bye soon');
      ws.close(1001, 'going away');
    } else if (path === '/ping') {
      ws.on('pong', () => ws.send('pong received'));
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
} else {
  const scenario = a3;
  const ws = new WebSocket(target, { perMessageDeflate: deflate(a4) });
  const replies = [];
  let waiting = null;
  ws.on('message', (data) => {
    if (waiting) { const w = waiting; waiting = null; w(data); } else replies.push(data);
  });
  const next = () => new Promise((res) => { if (replies.length) res(replies.shift()); else waiting = res; });
  ws.on('close', (code) => { console.log('closed', code); process.exit(0); });
  ws.on('error', (e) => { console.error(e.message); process.exit(1); });
  ws.on('open', async () => {
    if (scenario === 'echo') {
      ws.send('hello'); await next();
      ws.send(Buffer.from([0, 1, 2, 255])); await next();
      ws.send('Hel', { fin: false }); ws.send('lo, ', { fin: false }); ws.send('fragments', { fin: true }); await next();
      ws.send('compressible '.repeat(40)); await next();
      await new Promise((res) => { ws.once('pong', res); ws.ping('p1'); });
      ws.close(1000, 'done');
    } else if (scenario === 'server-close') {
      ws.send('close me');
    } else if (scenario === 'ping') {
      ws.send('ping me');
    } else if (scenario === 'badutf8') {
      ws._socket.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28]));
    }
  });
}
