package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// tailInactiveThreshold lets the server drop a tail's consumer whose client
// went away without deleting it (ExternalURL).
const tailInactiveThreshold = 30 * time.Second

// tailImpl is a tail: an ordered consumer (ephemeral, in memory, on the
// stream leader) read by one goroutine with the jetstream Messages iterator.
// The ordered consumer recreates itself after gaps or leader changes and
// resumes after the last delivered sequence, so fn sees each message once, in
// order.
type tailImpl struct {
	r    *run
	it   jetstream.MessagesContext
	s    *sub
	gate callGate
}

func (e *impl) tail(ctx context.Context, log, filter string, from uint64, fn func(Msg)) (*Tail, error) {
	r, err := e.running()
	if err != nil {
		return nil, err
	}
	if err := checkName("log", log); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("engine: Tail: fn is nil")
	}
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(from, 1),
		InactiveThreshold: tailInactiveThreshold,
	}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cctx, cancel := withTimeout(ctx)
	defer cancel()
	cons, err := r.js.OrderedConsumer(cctx, log, cfg)
	if err != nil {
		return nil, fmt.Errorf("engine: tailing log %q: %w", log, mapJSErr(err))
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("engine: tailing log %q: %w", log, mapJSErr(err))
	}
	t := &Tail{tailImpl{it: it, r: r}}
	t.gate.init()
	t.s = &sub{signal: t.signal}
	if err := r.track(t.s); err != nil {
		it.Stop()
		return nil, err
	}
	r.wg.Add(1)
	go t.loop(log, cons, fn)
	return t, nil
}

func (t *tailImpl) loop(log string, cons jetstream.Consumer, fn func(Msg)) {
	defer t.r.wg.Done()
	defer t.gate.exit()
	defer t.deleteConsumer(cons)
	for {
		m, err := t.it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || t.gate.stopped.Load() {
				return
			}
			t.r.log.Warn("tail: reading", "log", log, "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-t.r.closed:
			}
			continue
		}
		md, err := m.Metadata()
		if err != nil {
			t.r.log.Warn("tail: bad message metadata", "log", log, "err", err)
			continue
		}
		t.gate.call(func() {
			fn(Msg{Subject: m.Subject(), Seq: md.Sequence.Stream, Time: md.Timestamp, Data: m.Data()})
		})
	}
}

// deleteConsumer removes the tail's server-side consumer unless the engine
// is stopping (the server then drops it with the connection).
func (t *tailImpl) deleteConsumer(cons jetstream.Consumer) {
	if t.r.isClosing() {
		return
	}
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = t.r.js.DeleteConsumer(ctx, info.Stream, info.Name)
}

// signal asks the tail to end without waiting.
func (t *tailImpl) signal() {
	if t.gate.stop() {
		t.it.Stop()
		t.r.untrack(t.s)
	}
}

// stop ends the tail; see Tail.Stop.
func (t *tailImpl) stop() {
	t.signal()
	t.gate.wait()
}

// callGate lets a callback goroutine be stopped from any goroutine,
// including from inside the callback: after stop, no new call starts; wait
// returns when the goroutine has exited, or at once when a call is running
// (it may be the caller itself).
type callGate struct {
	stopped atomic.Bool
	inCall  atomic.Bool
	once    sync.Once
	exited  chan struct{}
}

func (g *callGate) init() { g.exited = make(chan struct{}) }

// call runs f unless the gate is stopped. Only the callback goroutine calls it.
func (g *callGate) call(f func()) {
	g.inCall.Store(true)
	defer g.inCall.Store(false)
	if g.stopped.Load() {
		return
	}
	f()
}

// stop closes the gate; it reports whether this call closed it.
func (g *callGate) stop() bool {
	first := false
	g.once.Do(func() { first = true; g.stopped.Store(true) })
	return first
}

// wait waits for the goroutine to exit unless a call is in progress.
// Sequentially consistent atomics make this safe: if wait sees inCall false,
// the goroutine's next call sees stopped true and returns without calling.
func (g *callGate) wait() {
	if g.inCall.Load() {
		return
	}
	<-g.exited
}

// exit is deferred by the callback goroutine.
func (g *callGate) exit() { close(g.exited) }
