package broker

import (
	"sort"

	"github.com/heraldhq/herald/internal/errs"
)

func (b *core) registerConn(c Conn) func() {
	name := c.Info().Name
	b.connsMu.Lock()
	b.conns[name] = c
	b.connsMu.Unlock()
	return func() {
		b.connsMu.Lock()
		if b.conns[name] == c {
			delete(b.conns, name)
		}
		b.connsMu.Unlock()
	}
}

func (b *core) connections() []ConnInfo {
	b.connsMu.Lock()
	cs := make([]Conn, 0, len(b.conns))
	for _, c := range b.conns {
		cs = append(cs, c)
	}
	b.connsMu.Unlock()
	out := make([]ConnInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (b *core) closeConn(name, reason string) error {
	b.connsMu.Lock()
	c := b.conns[name]
	b.connsMu.Unlock()
	if c == nil {
		return errs.New(errs.NotFound, "no connection '%s'", name)
	}
	c.Close(reason)
	return nil
}

func (b *core) onAlarm(fn func(bool, string)) func() {
	b.alarmMu.Lock()
	remove := b.alarmSubs.add(fn)
	blocked, why := b.blocked, b.blockWhy
	b.alarmMu.Unlock()
	fn(blocked, why)
	return remove
}

// SetAlarm raises (on) or clears a resource alarm by hand: publishers are
// blocked (AMQP connection.blocked) until it is cleared. Operators use it
// for maintenance; tests use it to exercise flow control.
func (b *Broker) SetAlarm(on bool, reason string) { b.setAlarm(on, reason) }

func (b *core) setAlarm(on bool, reason string) {
	b.alarmMu.Lock()
	if b.blocked == on && b.blockWhy == reason {
		b.alarmMu.Unlock()
		return
	}
	b.blocked, b.blockWhy = on, reason
	if !on {
		b.blockWhy = ""
	}
	subs := b.alarmSubs.list()
	b.alarmMu.Unlock()
	for _, f := range subs {
		f(on, reason)
	}
}

func (b *core) overview() Overview {
	o := Overview{Node: b.node}
	b.mu.RLock()
	var qs []*queue
	for _, vh := range b.vhostsM {
		o.Exchanges += len(vh.exchanges)
		for _, q := range vh.queues {
			qs = append(qs, q)
		}
	}
	b.mu.RUnlock()
	o.Queues = len(qs)
	for _, q := range qs {
		c := q.counts()
		o.Messages += c.Messages
		o.Ready += c.MessagesReady
		o.Unacked += c.MessagesUnacked
		o.Consumers += c.Consumers
	}
	b.connsMu.Lock()
	o.Connections = len(b.conns)
	b.connsMu.Unlock()
	o.Published = b.stats.published.Load()
	o.Delivered = b.stats.delivered.Load()
	o.Acked = b.stats.acked.Load()
	o.Redelivered = b.stats.redelivered.Load()
	o.Engine = b.eng.Stats()
	return o
}
