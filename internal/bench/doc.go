// Package bench holds Herald's load drivers. RunAMQP is `herald bench amqp`:
// a RabbitMQ PerfTest-style driver that works against any AMQP 0-9-1 broker
// (RabbitMQ or Herald), so the two can be compared with one tool and one
// command line.
//
// Each publisher and consumer has its own connection. Publishers stamp the
// send time (Unix nanoseconds, big-endian) into the first 8 bytes of each
// body; consumers subtract it from their receive time, so latency is
// end-to-end on one machine's clock (driver and broker on different machines
// need synchronised clocks). Latencies go to a log-linear Histogram (under
// 0.8% error). With a fixed rate (-r) the timestamp is the actual send time,
// not the scheduled one, so a stalled publisher hides its own stall from the
// latency figures (coordinated omission); compare the sent rate with -r.
//
// A run declares its exchange and queues (durable by default), purges the
// queues, starts the consumers, then the publishers, prints a progress line
// every second on stderr and a summary (or JSON with -json) on stdout.
// Queues are left in place at the end unless declared with --auto-delete.
// --cpuprofile FILE writes the driver's own CPU profile, to tell its cost
// from the broker's when both share a machine.
package bench
