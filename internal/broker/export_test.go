package broker

import "time"

// StaleOwnHeartbeats makes this node's own heartbeats look unseen for
// longer than two heartbeats, so its next heartbeat restarts the watch of
// the nodes (rewatch).
func (b *Broker) StaleOwnHeartbeats() {
	l := &b.live
	l.mu.Lock()
	delete(l.seen, b.node)
	l.watched = time.Time{}
	l.mu.Unlock()
}

// OwnHeartbeatSeen is when this node last saw its own heartbeat.
func (b *Broker) OwnHeartbeatSeen() time.Time {
	l := &b.live
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[b.node]
}
