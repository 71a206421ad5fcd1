package amqp

import (
	"strings"
	"sync"

	"github.com/heraldhq/herald/internal/broker"
)

// Direct reply-to (RabbitMQ's amq.rabbitmq.reply-to): a channel consuming
// from the pseudo-queue in no-ack mode gets a generated name; requests it
// publishes with reply_to "amq.rabbitmq.reply-to" carry that name instead,
// and a publish to the default exchange with that name as routing key is
// delivered straight to the channel, without a queue.
const (
	replyToQueue  = "amq.rabbitmq.reply-to"
	replyToPrefix = "amq.rabbitmq.reply-to."
)

// replyRegistry maps generated reply-to names to their channels.
type replyRegistry struct {
	mu sync.RWMutex
	m  map[string]*channel
}

func (r *replyRegistry) add(ch *channel) string {
	name := replyToPrefix + randomToken(18)
	r.mu.Lock()
	r.m[name] = ch
	r.mu.Unlock()
	return name
}

func (r *replyRegistry) remove(name string) {
	r.mu.Lock()
	delete(r.m, name)
	r.mu.Unlock()
}

// deliver hands msg to the channel named by routingKey; false if there is
// none (the reply is unroutable).
func (r *replyRegistry) deliver(routingKey string, msg *broker.Message) bool {
	if !strings.HasPrefix(routingKey, replyToPrefix) {
		return false
	}
	r.mu.RLock()
	ch := r.m[routingKey]
	r.mu.RUnlock()
	return ch != nil && ch.deliverReply(routingKey, msg)
}
