// Scenarios run by node_test.go against a real Herald realtime server, the
// way a new user would: pusher-js (Node build) in the "browser" role, the
// `pusher` server SDK as the app backend (auth endpoint, triggers, queries)
// and the `eventsource` package for SSE.
//
//   node scenarios.js <scenario>
//
// Environment: HERALD_HOST, HERALD_PORT, APP_ID, APP_KEY, APP_SECRET and,
// for the broker scenario, HERALD_HOOK (a URL the Go test serves: GET it to
// make the Go side publish into the app's exchange).
'use strict';

const http = require('http');
const crypto = require('crypto');
const Pusher = require('pusher-js');
const PusherServer = require('pusher');
const EventSource = require('eventsource');

const env = (k) => {
  if (!process.env[k]) throw new Error(`missing env ${k}`);
  return process.env[k];
};
const host = env('HERALD_HOST');
const port = Number(env('HERALD_PORT'));
const appId = env('APP_ID');
const key = env('APP_KEY');
const secret = env('APP_SECRET');

// The app backend: the official server SDK pointed at Herald.
const backend = new PusherServer({ appId, key, secret, host, port: String(port), useTLS: false });

function log(...a) { console.log(...a); }
function fail(msg) { console.error('FAIL:', msg); process.exit(1); }
setTimeout(() => fail('scenario timed out'), 20000).unref();

// waitFor resolves with the first call of a callback-style binder.
function once(bindable, event) {
  return new Promise((resolve) => bindable.bind(event, function handler(data, meta) {
    bindable.unbind(event, handler);
    resolve(data);
  }));
}

// An auth endpoint as an app would write it with the server SDK; a
// `forge` endpoint signs with a wrong secret.
function startAuthServer() {
  const forger = new PusherServer({ appId, key, secret: 'not-the-secret', host, port: String(port), useTLS: false });
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const p = new URLSearchParams(body);
      const socketId = p.get('socket_id');
      const channel = p.get('channel_name');
      const signer = req.url.startsWith('/forge') ? forger : backend;
      let auth;
      if (channel.startsWith('presence-')) {
        const user = new URL(req.url, 'http://x').searchParams.get('user') || 'anon';
        auth = signer.authorizeChannel(socketId, channel, { user_id: user, user_info: { name: user.toUpperCase() } });
      } else {
        auth = signer.authorizeChannel(socketId, channel);
      }
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(auth));
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => {
    srv.unref();
    resolve(`http://127.0.0.1:${srv.address().port}`);
  }));
}

function client(authURL) {
  const opts = {
    cluster: 'herald', wsHost: host, wsPort: port, forceTLS: false,
    enabledTransports: ['ws'], disableStats: true,
  };
  if (authURL) opts.channelAuthorization = { endpoint: authURL, transport: 'ajax' };
  return new Pusher(key, opts);
}

async function subscribed(ch) {
  await once(ch, 'pusher:subscription_succeeded');
}

const scenarios = {
  async public() {
    const p = client();
    const ch = p.subscribe('news');
    await subscribed(ch);
    const got = once(ch, 'headline');
    await backend.trigger('news', 'headline', { title: 'hello from the server SDK' });
    const data = await got;
    if (data.title !== 'hello from the server SDK') fail(`got ${JSON.stringify(data)}`);
    log('public ok', p.connection.socket_id);
    p.disconnect();
  },

  async private() {
    const auth = await startAuthServer();
    const p = client(auth + '/auth');
    const ch = p.subscribe('private-orders');
    await subscribed(ch);
    const got = once(ch, 'created');
    await backend.trigger('private-orders', 'created', { id: 7 });
    if ((await got).id !== 7) fail('wrong private event');
    log('private ok');
    p.disconnect();
  },

  async forged() {
    const auth = await startAuthServer();
    const p = client(auth + '/forge');
    const ch = p.subscribe('private-orders');
    const outcome = await Promise.race([
      once(ch, 'pusher:subscription_error').then((e) => ({ refused: e })),
      once(ch, 'pusher:subscription_succeeded').then(() => ({ accepted: true })),
    ]);
    if (!outcome.refused) fail('forged auth was accepted');
    if (outcome.refused.status !== 401) fail(`status ${JSON.stringify(outcome.refused)}`);
    log('forged refused:', outcome.refused.error);
    p.disconnect();
  },

  async presence() {
    const auth = await startAuthServer();
    const alice = client(auth + '/auth?user=alice');
    const ach = alice.subscribe('presence-room');
    await subscribed(ach);
    if (ach.members.count !== 1 || ach.members.me.id !== 'alice') fail('alice is not alone');
    const added = once(ach, 'pusher:member_added');
    const bob = client(auth + '/auth?user=bob');
    const bch = bob.subscribe('presence-room');
    await subscribed(bch);
    const m = await added;
    if (m.id !== 'bob' || m.info.name !== 'BOB') fail(`member_added ${JSON.stringify(m)}`);
    const ids = [];
    bch.members.each((mm) => ids.push(mm.id));
    if (ids.sort().join(',') !== 'alice,bob') fail(`bob sees ${ids}`);
    const res = await backend.get({ path: '/channels/presence-room/users' });
    const users = (await res.json()).users.map((u) => u.id).sort();
    if (users.join(',') !== 'alice,bob') fail(`users endpoint ${users}`);
    const removed = once(ach, 'pusher:member_removed');
    bob.disconnect();
    if ((await removed).id !== 'bob') fail('member_removed');
    log('presence ok');
    alice.disconnect();
  },

  async clientEvents() {
    const auth = await startAuthServer();
    const a = client(auth + '/auth');
    const b = client(auth + '/auth');
    const ach = a.subscribe('private-chat');
    const bch = b.subscribe('private-chat');
    await Promise.all([subscribed(ach), subscribed(bch)]);
    let echoed = false;
    ach.bind('client-typing', () => { echoed = true; });
    const got = once(bch, 'client-typing');
    if (!ach.trigger('client-typing', { who: 'a' })) fail('trigger refused locally');
    const d = await got;
    if (d.who !== 'a') fail('client event data');
    // A round trip on a's connection proves its own event did not come back.
    const pong = new Promise((r) => a.connection.bind('message', (m) => { if (m.event === 'pusher:pong') r(); }));
    a.send_event('pusher:ping', {});
    await pong;
    if (echoed) fail('sender received its own client event');
    log('client events ok');
    a.disconnect(); b.disconnect();
  },

  async trigger() {
    const a = client();
    const b = client();
    const ach = a.subscribe('alerts');
    const bch = b.subscribe('alerts');
    await Promise.all([subscribed(ach), subscribed(bch)]);
    let aGot = 0;
    ach.bind('alert', () => { aGot++; });
    const bGot = once(bch, 'alert');
    // Exclude a's socket, as an app does for the user who caused the event.
    await backend.trigger('alerts', 'alert', { n: 1 }, { socket_id: a.connection.socket_id });
    if ((await bGot).n !== 1) fail('b did not get the alert');
    const batchB = once(bch, 'second');
    const res = await backend.triggerBatch([{ channel: 'alerts', name: 'second', data: { n: 2 }, info: 'subscription_count' }]);
    const body = await res.json();
    if (body.batch[0].subscription_count !== 2) fail(`batch info ${JSON.stringify(body)}`);
    await batchB;
    if (aGot !== 0) fail('excluded socket got the event');
    const info = await (await backend.get({ path: '/channels/alerts', params: { info: 'subscription_count' } })).json();
    if (!info.occupied || info.subscription_count !== 2) fail(`channel info ${JSON.stringify(info)}`);
    // A wrongly signed request is refused with 401 and a clear message.
    const bad = new PusherServer({ appId, key, secret: 'wrong', host, port: String(port), useTLS: false });
    try {
      await bad.trigger('alerts', 'x', {});
      fail('bad signature accepted');
    } catch (e) {
      if (e.status !== 401 || !/invalid signature/.test(e.body)) fail(`bad signature: ${e.status} ${e.body}`);
    }
    log('trigger ok');
    a.disconnect(); b.disconnect();
  },

  async sse() {
    const url = `http://${host}:${port}/v1/apps/${appId}/channels/ticker/events`;
    const first = new EventSource(url);
    const open1 = new Promise((r) => { first.onopen = r; });
    const got1 = new Promise((r) => first.addEventListener('price', r));
    await open1;
    await waitOccupied('ticker');
    await backend.trigger('ticker', 'price', { v: 1 });
    const e1 = await got1;
    if (JSON.parse(e1.data).v !== 1 || !e1.lastEventId) fail('first SSE event');
    first.close();
    await waitVacated('ticker');
    // Missed while disconnected:
    await backend.trigger('ticker', 'price', { v: 2 });
    await backend.trigger('ticker', 'price', { v: 3 });
    const second = new EventSource(url, { headers: { 'Last-Event-ID': e1.lastEventId } });
    const seen = [];
    await new Promise((resolve) => second.addEventListener('price', (e) => {
      seen.push(JSON.parse(e.data).v);
      if (seen.length === 2) resolve();
    }));
    if (seen.join(',') !== '2,3') fail(`replayed ${seen}`);
    second.close();
    // Private SSE with a signed token, computed as documented.
    const exp = Math.floor(Date.now() / 1000) + 60;
    const sig = crypto.createHmac('sha256', secret).update(`sse:private-inbox:${exp}`).digest('hex');
    const priv = new EventSource(`http://${host}:${port}/v1/apps/${appId}/channels/private-inbox/events?auth=${encodeURIComponent(`${key}:${exp}:${sig}`)}`);
    const open3 = new Promise((r, j) => { priv.onopen = r; priv.onerror = j; });
    await open3;
    await waitOccupied('private-inbox');
    const got3 = new Promise((r) => priv.addEventListener('mail', r));
    await backend.trigger('private-inbox', 'mail', 'hi');
    if ((await got3).data !== 'hi') fail('private SSE');
    priv.close();
    log('sse ok');
  },

  async broker() {
    const p = client();
    const ch = p.subscribe('orders.eu');
    await subscribed(ch);
    const got = once(ch, 'order_created');
    await fetchURL(env('HERALD_HOOK'));
    const d = await got;
    if (d.id !== 42) fail(`amqp-side event ${JSON.stringify(d)}`);
    log('broker ok');
    p.disconnect();
  },
};

async function waitOccupied(name, want = true) {
  for (let i = 0; i < 500; i++) {
    const info = await (await backend.get({ path: `/channels/${name}` })).json();
    if (info.occupied === want) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  fail(`channel ${name} occupied != ${want}`);
}
const waitVacated = (name) => waitOccupied(name, false);

function fetchURL(url) {
  return new Promise((resolve, reject) => http.get(url, (res) => {
    res.resume();
    res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`hook status ${res.statusCode}`))));
  }).on('error', reject));
}

const name = process.argv[2];
if (!scenarios[name]) fail(`unknown scenario ${name}`);
scenarios[name]().then(() => process.exit(0), (e) => fail(e && e.stack || e));
