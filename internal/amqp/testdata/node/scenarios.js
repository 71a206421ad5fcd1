// Runs the client scenarios of internal/amqp's TestClients with amqplib, as
// a new user would write them, against HERALD_AMQP_URL. Prints one line per
// check; the Go test compares the output with clients/expected.txt, which
// the Python (pika) version prints too. Exits non-zero on any error.
'use strict';
const amqplib = require('amqplib');
const callbackApi = require('amqplib/callback_api');

const url = process.env.HERALD_AMQP_URL;
if (!url) {
  console.error('HERALD_AMQP_URL is not set');
  process.exit(2);
}

async function getAll(ch, queue) {
  const bodies = [];
  for (;;) {
    const msg = await ch.get(queue, { noAck: true });
    if (msg === false) return bodies;
    bodies.push(msg.content.toString());
  }
}

async function main() {
  const conn = await amqplib.connect(url, { clientProperties: { connection_name: 'amqplib scenarios' } });
  conn.on('error', (err) => { console.error('connection error:', err); process.exitCode = 1; });
  const ch = await conn.createConfirmChannel();
  ch.on('error', (err) => { console.error('channel error:', err); process.exitCode = 1; });

  // Declare an exchange, a queue and a binding.
  await ch.assertExchange('shop', 'direct', { durable: true });
  const q = await ch.assertQueue('orders', { durable: true });
  await ch.bindQueue('orders', 'shop', 'order.created');
  console.log(`declared shop ${q.queue} order.created`);

  // Publish persistent messages with publisher confirms.
  let acked = 0;
  const confirms = [];
  for (let i = 0; i < 10; i++) {
    confirms.push(new Promise((resolve, reject) => {
      ch.publish('shop', 'order.created', Buffer.from(`m${i}`), { persistent: true }, (err) => {
        if (err) reject(err); else { acked++; resolve(); }
      });
    }));
  }
  await Promise.all(confirms);
  await ch.waitForConfirms();
  console.log(`confirmed ${acked}/10`);

  // Consume with manual acks and a prefetch window.
  await ch.prefetch(5);
  const got = [];
  await new Promise((resolve, reject) => {
    ch.consume('orders', (msg) => {
      if (msg === null) { reject(new Error('consumer cancelled by server')); return; }
      got.push(msg.content.toString());
      ch.ack(msg);
      if (got.length === 10) resolve();
    }, { noAck: false, consumerTag: 'orders-consumer' }).catch(reject);
  });
  await ch.cancel('orders-consumer');
  console.log(`consumed ${got.join(' ')}`);

  // Topic routing: '*' is one word, '#' zero or more.
  await ch.assertExchange('events', 'topic', { durable: false });
  const patterns = [['errors', '*.error'], ['app', 'app.#'], ['all', '#']];
  for (const [name, pattern] of patterns) {
    await ch.assertQueue(`topic.${name}`, { durable: false });
    await ch.bindQueue(`topic.${name}`, 'events', pattern);
  }
  for (const key of ['db.error', 'app.start', 'app.db.error', 'a.b']) {
    ch.publish('events', key, Buffer.from(key));
  }
  await ch.waitForConfirms();
  for (const [name] of patterns) {
    const bodies = await getAll(ch, `topic.${name}`);
    console.log(`topic ${name}: ${bodies.sort().join(' ')}`);
  }

  // basic.get: one message at a time with the count left, then empty.
  await ch.assertQueue('inbox', { durable: false });
  ch.sendToQueue('inbox', Buffer.from('first'));
  ch.sendToQueue('inbox', Buffer.from('second'));
  await ch.waitForConfirms();
  const parts = [];
  for (;;) {
    const msg = await ch.get('inbox', { noAck: false });
    if (msg === false) { parts.push('empty'); break; }
    parts.push(`${msg.content.toString()} (${msg.fields.messageCount} left)`);
    ch.ack(msg);
  }
  console.log(`get: ${parts.join(', ')}`);

  // Dead-lettering: a rejected message goes to the DLX with x-death.
  await ch.assertExchange('dlx', 'fanout', { durable: true });
  await ch.assertQueue('dead', { durable: true });
  await ch.bindQueue('dead', 'dlx', '');
  await ch.assertQueue('work', { durable: true, deadLetterExchange: 'dlx' });
  ch.sendToQueue('work', Buffer.from('bad order'), { persistent: true });
  await ch.waitForConfirms();
  const bad = await ch.get('work', { noAck: false });
  if (bad === false) throw new Error('work queue is empty');
  ch.reject(bad, false);
  let dead = false;
  for (let i = 0; i < 200 && dead === false; i++) {
    dead = await ch.get('dead', { noAck: true });
    if (dead === false) await new Promise((r) => setTimeout(r, 25));
  }
  if (dead === false) throw new Error('nothing dead-lettered within 5s');
  const h = dead.properties.headers;
  const death = h['x-death'][0];
  console.log(`dead-letter: ${dead.content.toString()}; reason ${death.reason}; queue ${death.queue}; ` +
    `count ${Number(death.count)}; first-death-reason ${h['x-first-death-reason']}`);

  await ch.close();
  await conn.close();

  await burstThenClose();
}

// Burst then close: publish a few thousand small messages without waiting,
// then close at once. amqplib writes connection.close ahead of the publishes
// still queued in its channel buffer, so the server reads them after sending
// close-ok; the close callback must still run (no ECONNRESET).
function burstThenClose() {
  const n = 5000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('burst: close callback not called within 20s')), 20000);
    const fail = (err) => { clearTimeout(timer); reject(err); };
    callbackApi.connect(url, (err, conn) => {
      if (err) return fail(err);
      conn.on('error', (err) => fail(new Error(`burst: connection error: ${err.message}`)));
      conn.createChannel((err, ch) => {
        if (err) return fail(err);
        ch.on('error', (err) => fail(new Error(`burst: channel error: ${err.message}`)));
        for (let i = 0; i < n; i++) ch.sendToQueue('burst', Buffer.from(`burst message ${i}`));
        conn.close((err) => {
          if (err) return fail(err);
          clearTimeout(timer);
          console.log(`burst: ${n} published, then closed cleanly`);
          resolve();
        });
      });
    });
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
