// Reference chat server for side-by-side benchmarks: Node.js + ws speaking Chorus's join/send/message subset.
//
// What a typical small Node chat server does: one process, rooms in a Map, each event serialised once and
// sent with one ws.send per member. Bearer tokens are decoded for the user id but NOT verified (this is a
// benchmark stand-in, never a server to expose). No hello, history, typing or presence.
//
// usage: node server.js [--port 8090] [--host 127.0.0.1]   (port 0 picks a free one; the log line says which)
'use strict';

const http = require('http');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = arg('--host', '127.0.0.1');
const port = parseInt(arg('--port', process.env.PORT || '8090'), 10);

// room id -> { seq, members: Set<WebSocket> }
const rooms = new Map();
const roomPattern = /^[a-z0-9][a-z0-9_-]{0,63}$/;

function userFromBearer(header) {
  if (typeof header !== 'string' || !/^bearer /i.test(header)) return null;
  const parts = header.slice(7).trim().split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return typeof claims.sub === 'string' && claims.sub.length > 0 ? claims.sub : null;
  } catch {
    return null;
  }
}

function reply(ws, id, d) {
  ws.send(JSON.stringify({ re: id, ok: true, d }));
}

function fail(ws, id, code, message) {
  const error = { code, message };
  ws.send(JSON.stringify(Number.isInteger(id) ? { re: id, ok: false, error } : { ev: 'error', error }));
}

function onRequest(ws, req) {
  const id = req.id;
  if (!Number.isInteger(id) || typeof req.op !== 'string') {
    return fail(ws, id, 'bad_request', 'op and id are required');
  }
  switch (req.op) {
    case 'ping':
      return reply(ws, id, { ts: new Date().toISOString() });
    case 'join': {
      if (typeof req.room !== 'string' || !roomPattern.test(req.room)) {
        return fail(ws, id, 'invalid_room', 'bad room');
      }
      let room = rooms.get(req.room);
      if (!room) {
        room = { seq: 0, members: new Set() };
        rooms.set(req.room, room);
      }
      room.members.add(ws);
      ws.rooms.add(req.room);
      // Chorus lists the members; a 5,000-member list per join would make this reference quadratic, and
      // the generator does not read it.
      return reply(ws, id, { room: req.room, last_seq: room.seq, members: [] });
    }
    case 'leave': {
      const room = rooms.get(req.room);
      if (!room || !room.members.delete(ws)) return fail(ws, id, 'not_joined', 'not in that room');
      ws.rooms.delete(req.room);
      return reply(ws, id, { room: req.room });
    }
    case 'send': {
      const room = rooms.get(req.room);
      if (!room || !room.members.has(ws)) return fail(ws, id, 'not_joined', 'join the room first');
      if (typeof req.text !== 'string' || req.text.trim() === '') {
        return fail(ws, id, 'invalid_text', 'empty text');
      }
      const seq = ++room.seq;
      const msgId = crypto.randomUUID();
      const ts = new Date().toISOString();
      const cmid = typeof req.client_msg_id === 'string' ? req.client_msg_id : undefined;
      reply(ws, id, { id: msgId, room: req.room, seq, ts, client_msg_id: cmid });
      // Serialise once, send to every member (the sender included, after its reply).
      const event = JSON.stringify({
        ev: 'message',
        room: req.room,
        seq,
        d: { id: msgId, user: ws.user, text: req.text, ts, client_msg_id: cmid },
      });
      for (const member of room.members) member.send(event);
      return;
    }
    default:
      return fail(ws, id, 'unknown_op', `unknown op '${req.op}'`);
  }
}

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', connections: wss.clients.size }));
  } else {
    res.writeHead(404);
    res.end();
  }
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 65536 });

server.on('upgrade', (req, socket, head) => {
  const user = userFromBearer(req.headers.authorization);
  if (!req.url.startsWith('/ws') || !user) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.user = user;
    ws.rooms = new Set();
    ws.on('message', (data, isBinary) => {
      if (isBinary) return fail(ws, undefined, 'unsupported_frame', 'binary frame');
      let req;
      try {
        req = JSON.parse(data);
      } catch {
        return fail(ws, undefined, 'malformed_json', 'frame is not valid JSON');
      }
      if (req === null || typeof req !== 'object' || Array.isArray(req)) {
        return fail(ws, undefined, 'not_an_object', 'frame is not an object');
      }
      onRequest(ws, req);
    });
    ws.on('close', () => {
      for (const name of ws.rooms) {
        const room = rooms.get(name);
        if (room) room.members.delete(ws);
      }
    });
    ws.on('error', () => {});
  });
});

server.listen(port, host, () => {
  const { port: bound } = server.address();
  console.error(`reference listening on http://${host}:${bound} (WebSocket at ws://${host}:${bound}/ws)`);
});

function shutdown() {
  for (const ws of wss.clients) ws.close(1001, 'going away');
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
