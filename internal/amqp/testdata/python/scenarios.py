"""Runs the client scenarios of internal/amqp's TestClients with pika, as a
new user would write them, against HERALD_AMQP_URL. Prints one line per
check; the Go test compares the output with what the Node (amqplib) version
prints. Exits non-zero on any error."""

import os
import sys
import time

import pika


def get_all(ch, queue):
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body.decode())


def main():
    url = os.environ.get("HERALD_AMQP_URL")
    if not url:
        print("HERALD_AMQP_URL is not set", file=sys.stderr)
        return 2
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": "pika scenarios"}
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()

    # Declare an exchange, a queue and a binding.
    ch.exchange_declare("shop", exchange_type="direct", durable=True)
    q = ch.queue_declare("orders", durable=True)
    ch.queue_bind("orders", "shop", routing_key="order.created")
    print(f"declared shop {q.method.queue} order.created")

    # Publish persistent messages with publisher confirms: on a confirming
    # BlockingChannel, basic_publish returns once the broker acked it and
    # raises NackError when it nacked.
    acked = 0
    for i in range(10):
        ch.basic_publish("shop", "order.created", f"m{i}".encode(),
                         pika.BasicProperties(delivery_mode=pika.spec.PERSISTENT_DELIVERY_MODE))
        acked += 1
    print(f"confirmed {acked}/10")

    # Consume with manual acks and a prefetch window.
    ch.basic_qos(prefetch_count=5)
    got = []
    for method, _props, body in ch.consume("orders", auto_ack=False, inactivity_timeout=10):
        if method is None:
            raise RuntimeError("no delivery within 10s")
        got.append(body.decode())
        ch.basic_ack(method.delivery_tag)
        if len(got) == 10:
            break
    ch.cancel()
    print("consumed " + " ".join(got))

    # Topic routing: '*' is one word, '#' zero or more.
    ch.exchange_declare("events", exchange_type="topic", durable=False)
    patterns = [("errors", "*.error"), ("app", "app.#"), ("all", "#")]
    for name, pattern in patterns:
        ch.queue_declare(f"topic.{name}", durable=False)
        ch.queue_bind(f"topic.{name}", "events", routing_key=pattern)
    for key in ["db.error", "app.start", "app.db.error", "a.b"]:
        ch.basic_publish("events", key, key.encode())
    for name, _ in patterns:
        print(f"topic {name}: " + " ".join(sorted(get_all(ch, f"topic.{name}"))))

    # basic.get: one message at a time with the count left, then empty.
    ch.queue_declare("inbox", durable=False)
    ch.basic_publish("", "inbox", b"first")
    ch.basic_publish("", "inbox", b"second")
    parts = []
    while True:
        method, _props, body = ch.basic_get("inbox", auto_ack=False)
        if method is None:
            parts.append("empty")
            break
        parts.append(f"{body.decode()} ({method.message_count} left)")
        ch.basic_ack(method.delivery_tag)
    print("get: " + ", ".join(parts))

    # Dead-lettering: a rejected message goes to the DLX with x-death.
    ch.exchange_declare("dlx", exchange_type="fanout", durable=True)
    ch.queue_declare("dead", durable=True)
    ch.queue_bind("dead", "dlx", routing_key="")
    ch.queue_declare("work", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_publish("", "work", b"bad order",
                     pika.BasicProperties(delivery_mode=pika.spec.PERSISTENT_DELIVERY_MODE))
    method, _props, _body = ch.basic_get("work", auto_ack=False)
    if method is None:
        raise RuntimeError("work queue is empty")
    ch.basic_reject(method.delivery_tag, requeue=False)
    dead = None
    deadline = time.monotonic() + 5
    while dead is None and time.monotonic() < deadline:
        method, props, body = ch.basic_get("dead", auto_ack=True)
        if method is not None:
            dead = (props, body)
        else:
            time.sleep(0.025)
    if dead is None:
        raise RuntimeError("nothing dead-lettered within 5s")
    props, body = dead
    h = props.headers
    death = h["x-death"][0]
    print(f"dead-letter: {body.decode()}; reason {death['reason']}; queue {death['queue']}; "
          f"count {death['count']}; first-death-reason {h['x-first-death-reason']}")

    ch.close()
    conn.close()

    # Burst then close: publish a few thousand small messages, then close at
    # once; close must complete with close-ok (amqplib's version of this
    # check is the one that once saw the connection reset).
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    n = 5000
    for i in range(n):
        ch.basic_publish("", "burst", f"burst message {i}".encode())
    conn.close()
    print(f"burst: {n} published, then closed cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
