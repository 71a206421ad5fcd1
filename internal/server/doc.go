// Package server assembles a Herald node: the engine, the broker core and
// every face (HTTP management API, AMQP 0-9-1, real-time web), started in
// dependency order and stopped in reverse: faces drain first, then the broker
// flushes, then the engine syncs and shuts down. It also runs the resource
// watchdog that raises the memory and disk alarms (publishers are blocked
// while an alarm is up).
package server
