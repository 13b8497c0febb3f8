'use strict';
// Baseline for the groupcast benchmarks: the seed protocol (add_group,
// leave_group, send_to_group) on the npm `ws` package, fanning out with the
// broadcast idiom of the ws README (iterate the clients, `client.send(data)`
// when open), over the group's clients instead of all of them.
//
// Usage: node server.js [PORT] [HOST]   (PORT 0 = any free port)
// Prints `node-ws listening websocket=HOST:PORT` once listening; SIGTERM stops it.

const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 1234);
const host = process.argv[3] || '127.0.0.1';

/** group id -> Set of member sockets */
const groups = new Map();

function leave(ws, key) {
  const members = groups.get(key);
  if (!members) return;
  members.delete(ws);
  if (members.size === 0) groups.delete(key); // no empty groups left behind
  ws.groups.delete(key);
}

function reply(ws, error) {
  ws.send(JSON.stringify({ error }));
}

const wss = new WebSocketServer({ host, port, clientTracking: false });

wss.on('connection', (ws) => {
  ws.groups = new Set();
  ws.on('error', () => {});
  ws.on('message', (raw) => {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return reply(ws, 'invalid JSON');
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return reply(ws, 'not an object');
    const gid = msg.group_id;
    if (gid === undefined || gid === null || gid === '') return reply(ws, 'missing group_id');
    const key = String(gid);
    switch (msg.cmd) {
      case 'add_group': {
        let members = groups.get(key);
        if (!members) groups.set(key, (members = new Set()));
        members.add(ws);
        ws.groups.add(key);
        break;
      }
      case 'leave_group':
        leave(ws, key);
        break;
      case 'send_to_group': {
        const members = groups.get(key);
        if (!members) break;
        const text = typeof msg.message === 'string' ? msg.message : JSON.stringify(msg.message);
        const data = Buffer.from(text); // encoded once, like the idiom's received `data`
        for (const client of members) {
          if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
        }
        break;
      }
      default:
        reply(ws, 'unknown cmd');
    }
  });
  ws.on('close', () => {
    for (const key of [...ws.groups]) leave(ws, key);
  });
});

wss.on('listening', () => {
  const addr = wss.address();
  console.log(`node-ws listening websocket=${addr.address}:${addr.port}`);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
