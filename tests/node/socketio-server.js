'use strict';
/*
 * One socket.io v4 replica for tests/test_socketio.py, set up as the seed
 * article's "Path Prefix Gotchas" section says: require('socket.io')(server,
 * {path: '/'}), so the proxy in front strips its own prefix (/wsk) and the
 * server answers at the root.
 *
 *   node socketio-server.js REPLICA-ID
 *
 * Listens on 127.0.0.1, port 0, and prints the port as the first line of
 * stdout (and nothing else there). Every 'msg' is acknowledged with
 * {n, replica, transport}; 'info' is acknowledged with what this replica saw
 * of the socket's engine.io session: the transport it opened with, the one it
 * uses now, and the Cookie headers of the HTTP requests (polling and the
 * websocket upgrade) that carried its session id. Exits 0 on SIGTERM.
 */

const http = require('http');

const replica = process.argv[2] || `pid-${process.pid}`;
const httpServer = http.createServer();

// sid -> {polling: number of polling requests, cookies: Set, upgradeCookie}
const sessions = new Map();

function session(sid) {
  let s = sessions.get(sid);
  if (!s) {
    s = { polling: 0, cookies: new Set(), upgradeCookie: null };
    sessions.set(sid, s);
  }
  return s;
}

function sidOf(req) {
  return new URL(req.url, 'http://replica.invalid').searchParams.get('sid');
}

const io = require('socket.io')(httpServer, {
  path: '/',
});

// Added after socket.io (which takes over the 'request' listeners it finds)
// and put first, so every request and upgrade is seen.
httpServer.prependListener('request', (req) => {
  const sid = sidOf(req);
  if (sid) {
    const s = session(sid);
    s.polling += 1;
    s.cookies.add(req.headers.cookie || '');
  }
});
httpServer.prependListener('upgrade', (req) => {
  const sid = sidOf(req);
  if (sid) {
    session(sid).upgradeCookie = req.headers.cookie || '';
  }
});

io.on('connection', (socket) => {
  const sid = socket.conn.id;
  const openedWith = socket.conn.transport.name;
  socket.on('msg', (n, ack) => {
    ack({ n, replica, transport: socket.conn.transport.name });
  });
  socket.on('info', (ack) => {
    const s = sessions.get(sid) || { polling: 0, cookies: new Set(), upgradeCookie: null };
    ack({
      replica,
      sid,
      openedWith,
      transport: socket.conn.transport.name,
      pollingRequests: s.polling,
      pollingCookies: [...s.cookies],
      upgradeCookie: s.upgradeCookie,
    });
  });
  socket.on('disconnect', () => {
    sessions.delete(sid);
  });
});

process.on('SIGTERM', () => {
  io.close();
  process.exit(0);
});

httpServer.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
