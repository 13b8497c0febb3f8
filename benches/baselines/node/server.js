'use strict';
// Baseline for the groupcast benchmarks: the seed protocol (add_group,
// leave_group, send_to_group) on the npm `ws` package, fanning out with the
// broadcast idiom of the ws README (iterate the clients, `client.send(data)`
// when open), over the group's clients instead of all of them.
//
// Usage: node server.js [PORT] [HOST] [CHANNEL_HOST:PORT]   (PORT 0 = any free port)
// Prints `node-ws listening websocket=HOST:PORT` once listening; SIGTERM stops it.
//
// With CHANNEL_HOST:PORT it runs like a process of the seed's cluster: it
// subscribes to the `send_to_group` channel of a (groupcast) channel server,
// publishes every send_to_group there, and delivers each event it receives
// (its own publications included) to its local members.

const net = require('net');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 1234);
const host = process.argv[3] || '127.0.0.1';
const channelAddress = process.argv[4];

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

function deliver(key, text) {
  const members = groups.get(key);
  if (!members) return;
  const data = Buffer.from(text); // encoded once, like the idiom's received `data`
  for (const client of members) {
    if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
  }
}

// Channel protocol: 4-byte big-endian length (header included), JSON body.
function frame(body) {
  const json = Buffer.from(JSON.stringify(body));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(json.length + 4);
  return Buffer.concat([header, json]);
}

function publish(key, text) {
  channel.write(frame({ type: 'publish', channels: ['send_to_group'], data: { group_id: key, message: text } }));
}

let channel = null;
if (channelAddress) {
  const [chost, cport] = channelAddress.split(':');
  channel = net.connect(Number(cport), chost, () => {
    channel.setNoDelay(true);
    channel.write(frame({ type: 'subscribe', channels: ['send_to_group'] }));
  });
  let pending = Buffer.alloc(0);
  channel.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 4) {
      const len = pending.readUInt32BE(0);
      if (pending.length < len) break;
      const body = pending.subarray(4, len);
      pending = pending.subarray(len);
      if (body.length === 0) continue; // ping
      const event = JSON.parse(body);
      if (event.type === 'event' && event.channel === 'send_to_group') {
        deliver(String(event.data.group_id), event.data.message);
      }
    }
  });
  channel.on('error', (error) => {
    console.error(`channel: ${error.message}`);
    process.exit(1);
  });
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
        const text = typeof msg.message === 'string' ? msg.message : JSON.stringify(msg.message);
        if (channel) publish(key, text);
        else deliver(key, text);
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
