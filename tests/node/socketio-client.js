'use strict';
/*
 * socket.io v4 client for tests/test_socketio.py.
 *
 *   node socketio-client.js --url http://127.0.0.1:PORT [--path /wsk]
 *       [--clients 1] [--messages 1000] [--window 20] [--timeout 20000]
 *       [--duration 0] [--grace 200] [--cookies jar|header|none]
 *       [--transports polling,websocket]
 *
 * Each client connects with transports ['polling', 'websocket'], so it opens
 * by long-polling and then upgrades to websocket (with --transports websocket,
 * the seed article's own client, it opens with websocket). Once on websocket
 * it asks the server what it saw ('info'), then sends --messages 'msg' events
 * with acknowledgements, at most --window of them in flight and, with
 * --duration, spread over at least that many milliseconds; after the last ack
 * it waits --grace milliseconds for duplicates. It prints
 * {"event": "exchange", "client": N} when a client starts sending and one
 * JSON summary per client at the end, and exits 1 if any client lost,
 * duplicated or mismatched an ack, did not reach websocket, was answered by
 * more than one replica, or ran out of time.
 *
 * Cookies (the proxy's sticky cookie must come back on every request):
 *  - jar: withCredentials: true, which makes engine.io-client (since 6.5,
 *    socket.io-client 4.7) keep a cookie jar in Node and send it on polling
 *    requests and the websocket upgrade. The jar keeps a cookie's name, value
 *    and expiry only: Secure, HttpOnly, Path, Domain and SameSite are ignored,
 *    so a Secure cookie goes back over plain http too. Without
 *    withCredentials, Node's client keeps no cookies at all;
 *  - header: read Set-Cookie from a handshake request of our own and pass the
 *    cookie in extraHeaders, as one had to before the jar existed;
 *  - none: no cookies at all (to show what stickiness is for).
 */

const http = require('http');
const { io } = require('socket.io-client');

function parseArgs(argv) {
  const options = {
    url: null,
    path: '/wsk',
    clients: 1,
    messages: 1000,
    window: 20,
    timeout: 20000,
    duration: 0,
    grace: 200,
    cookies: 'jar',
    transports: 'polling,websocket',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in options) || i + 1 >= argv.length) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    const value = argv[i + 1];
    options[key] = typeof options[key] === 'number' ? Number(value) : value;
  }
  if (!options.url) {
    throw new Error('--url is required');
  }
  return options;
}

/*
 * Fetch a handshake from the proxy ourselves and return the "name=value"
 * parts of its Set-Cookie headers, as a browser's cookie store would keep
 * them (attributes dropped).
 */
function fetchCookie(options) {
  const target = new URL(`${options.path.replace(/\/$/, '')}/?EIO=4&transport=polling`, options.url);
  return new Promise((resolve, reject) => {
    const request = http.get(target, (response) => {
      response.resume();
      const cookies = (response.headers['set-cookie'] || []).map((c) => c.split(';')[0].trim());
      resolve({ status: response.statusCode, cookie: cookies.join('; '), setCookie: response.headers['set-cookie'] || [] });
    });
    request.setTimeout(options.timeout, () => request.destroy(new Error('handshake timed out')));
    request.on('error', reject);
  });
}

function runClient(index, options, deadline) {
  return new Promise((resolve) => {
    const started = Date.now();
    const summary = {
      client: index,
      cookies: options.cookies,
      acks: 0,
      lost: options.messages,
      duplicates: 0,
      mismatched: 0,
      openedWith: null,
      transport: null,
      upgraded: false,
      replicas: [],
      serverTransports: [],
      info: null,
      jar: null,
      sentCookie: null,
      errors: [],
      elapsedMs: 0,
      ok: false,
    };
    let finished = false;
    let socket = null;
    const timer = setTimeout(() => finish('timed out'), Math.max(0, deadline - Date.now()));

    function finish(error) {
      if (finished) {
        return;
      }
      finished = true;
      clearTimeout(timer);
      if (error) {
        summary.errors.push(String(error));
      }
      if (socket !== null) {
        summary.transport = socket.io.engine ? socket.io.engine.transport.name : null;
        const jar = socket.io.engine && socket.io.engine._cookieJar;
        if (jar) {
          summary.jar = Object.fromEntries([...jar.cookies].map(([name, c]) => [name, c.value]));
        }
        socket.disconnect();
      }
      summary.elapsedMs = Date.now() - started;
      summary.ok = (
        summary.errors.length === 0 &&
        summary.acks === options.messages &&
        summary.lost === 0 &&
        summary.duplicates === 0 &&
        summary.mismatched === 0 &&
        (summary.upgraded || summary.openedWith === 'websocket') &&
        summary.transport === 'websocket' &&
        summary.replicas.length === 1
      );
      resolve(summary);
    }

    function connect(extraHeaders) {
      socket = io(options.url, {
        path: options.path,
        transports: options.transports.split(','),
        withCredentials: options.cookies === 'jar',
        extraHeaders,
        forceNew: true,
        reconnection: false,
        timeout: options.timeout,
      });
      const manager = socket.io;
      // socket.io drops an ack whose callback already ran, so duplicates are
      // counted here, on the decoded packets (type 3 is ACK).
      const ackPackets = new Map();
      manager.on('packet', (packet) => {
        if (packet.type === 3) {
          const seen = (ackPackets.get(packet.id) || 0) + 1;
          ackPackets.set(packet.id, seen);
          if (seen > 1) {
            summary.duplicates += 1;
          }
        }
      });
      // The upgrade can finish before 'connect' fires: listen from 'open'.
      manager.on('open', () => {
        const engine = manager.engine;
        summary.openedWith = engine.transport.name;
        engine.on('upgrade', (transport) => {
          summary.upgraded = transport.name === 'websocket';
          maybeStart();
        });
        engine.on('upgradeError', (err) => summary.errors.push(`upgrade error: ${err.message || err}`));
      });
      manager.on('error', (err) => finish(`manager error: ${err.message || err}`));
      socket.on('connect_error', (err) => finish(`connect_error: ${err.message || err}`));
      socket.on('disconnect', (reason) => finish(`disconnected: ${reason}`));
      socket.on('connect', () => maybeStart());
    }

    let exchangeStarted = false;
    function maybeStart() {
      if (exchangeStarted || !socket.connected) {
        return;
      }
      if (socket.io.engine.transport.name !== 'websocket') {
        return; // wait for the 'upgrade' event
      }
      summary.upgraded = summary.openedWith !== 'websocket';
      exchangeStarted = true;
      socket.emit('info', (info) => {
        summary.info = info;
        exchange();
      });
    }

    function exchange() {
      process.stdout.write(`${JSON.stringify({ event: 'exchange', client: index })}\n`);
      const sendingSince = Date.now();
      const counts = new Array(options.messages).fill(0);
      const replicas = new Set();
      const transports = new Set();
      let next = 0;
      let outstanding = 0;
      let paced = null;

      function sendMore() {
        while (!finished && outstanding < options.window && next < options.messages) {
          const due = sendingSince + (next * options.duration) / options.messages;
          if (Date.now() < due) {
            if (paced === null) {
              paced = setTimeout(() => {
                paced = null;
                sendMore();
              }, due - Date.now());
            }
            return;
          }
          const n = next;
          next += 1;
          outstanding += 1;
          socket.emit('msg', n, (answer) => {
            outstanding -= 1;
            counts[n] += 1;
            if (counts[n] === 1) {
              summary.acks += 1;
              summary.lost -= 1;
            } else {
              summary.duplicates += 1;
            }
            if (!answer || answer.n !== n) {
              summary.mismatched += 1;
            } else {
              replicas.add(answer.replica);
              transports.add(answer.transport);
              summary.replicas = [...replicas].sort();
              summary.serverTransports = [...transports].sort();
            }
            if (summary.acks === options.messages) {
              setTimeout(() => finish(null), options.grace);
            } else {
              sendMore();
            }
          });
        }
      }
      if (options.messages === 0) {
        finish(null);
        return;
      }
      sendMore();
    }

    if (options.cookies === 'header') {
      fetchCookie(options).then((result) => {
        summary.sentCookie = result.cookie;
        if (result.status !== 200 || !result.cookie) {
          finish(`own handshake: status ${result.status}, Set-Cookie ${JSON.stringify(result.setCookie)}`);
          return;
        }
        connect({ cookie: result.cookie });
      }, (err) => finish(`own handshake failed: ${err.message || err}`));
    } else {
      connect(undefined);
    }
  });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + options.timeout;
  const clients = [];
  for (let i = 0; i < options.clients; i += 1) {
    clients.push(runClient(i, options, deadline));
  }
  const summaries = await Promise.all(clients);
  for (const summary of summaries) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  }
  process.exit(summaries.every((s) => s.ok) ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(2);
});
