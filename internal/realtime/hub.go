package realtime

import (
	"encoding/json"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/errs"
)

// Channel kinds, by name prefix.
type chanKind uint8

const (
	kindPublic chanKind = iota
	kindPrivate
	kindEncrypted // private-encrypted-: end-to-end encrypted, no client events
	kindPresence
)

var channelNameRe = regexp.MustCompile(`^[-a-zA-Z0-9_=@,.;]{1,164}$`)

func channelKind(name string) chanKind {
	switch {
	case strings.HasPrefix(name, "private-encrypted-"):
		return kindEncrypted
	case strings.HasPrefix(name, "private-"):
		return kindPrivate
	case strings.HasPrefix(name, "presence-"):
		return kindPresence
	}
	return kindPublic
}

func validChannel(name string) error {
	if !channelNameRe.MatchString(name) {
		return errs.New(errs.BadArgument, "invalid channel name %q: 1-164 characters of [-a-zA-Z0-9_=@,.;]", name)
	}
	return nil
}

// inbound is an event entering the hub from the bus.
type inbound struct {
	channel string
	name    string
	data    string
	userID  string
	exclude string
}

// hub is one app's channels on this node.
type hub struct {
	srv   *Server
	app   App
	epoch string // distinguishes this process's event ids from a previous one's

	seq       atomic.Uint64 // last event sequence number of the app
	lostUpTo  atomic.Uint64 // highest seq dispatched while no history record could be made
	histBytes atomic.Int64  // approximate bytes held in history (see event.cost)

	mu           sync.RWMutex
	channels     map[string]*channel
	histChannels int    // channels holding a history record
	deletedFloor uint64 // highest seq of any deleted channel record
}

type member struct {
	info  json.RawMessage
	conns int
}

// channel is one channel of a hub. Every field is guarded by mu.
type channel struct {
	name string
	kind chanKind

	mu      sync.Mutex
	dead    bool // removed from the hub; look it up again
	subs    []*subscription
	members map[string]*member // presence channels only

	hasRecord   bool     // counts in hub.histChannels
	hist        []*event // ring, oldest at histHead once full
	histHead    int
	evictedUpTo uint64 // highest seq evicted from (or never kept in) hist
}

// subscription is one transport subscribed to one channel.
type subscription struct {
	ch     *channel
	t      transport
	idx    int    // position in ch.subs
	userID string // presence member id
	upTo   uint64 // hub seq when it subscribed
}

func newHub(srv *Server, a App, epoch string) *hub {
	return &hub{srv: srv, app: a, epoch: epoch, channels: map[string]*channel{}}
}

func (h *hub) historyOn() bool { return h.srv.cfg.HistorySize > 0 }

// lockChannel returns the named channel locked. With create it makes a
// missing one; when record is also set the new channel gets a history record
// unless HistoryChannels is reached. It returns nil when the channel does not
// exist and was not created.
func (h *hub) lockChannel(name string, create bool) *channel {
	for {
		h.mu.RLock()
		ch := h.channels[name]
		h.mu.RUnlock()
		if ch == nil {
			if !create {
				return nil
			}
			h.mu.Lock()
			ch = h.channels[name]
			if ch == nil {
				ch = &channel{name: name, kind: channelKind(name)}
				ch.evictedUpTo = h.deletedFloor
				if h.historyOn() && h.histChannels < h.srv.cfg.HistoryChannels {
					ch.hasRecord = true
					h.histChannels++
				}
				h.channels[name] = ch
			}
			h.mu.Unlock()
		}
		ch.mu.Lock()
		if !ch.dead {
			return ch
		}
		ch.mu.Unlock()
	}
}

// dispatch delivers an event to the channel's local subscribers and records
// it in the channel's history.
func (h *hub) dispatch(in inbound) {
	now := h.srv.cfg.Now()
	ch := h.lockChannel(in.channel, h.historyOn())
	if ch == nil {
		return // nobody here, nothing kept
	}
	seq := h.seq.Add(1)
	e := &event{
		seq: seq, id: eventID(h.epoch, seq), at: now,
		channel: in.channel, name: in.name, data: in.data, userID: in.userID, exclude: in.exclude,
	}
	if ch.hasRecord && h.reserveLocked(ch, e.cost()) {
		ch.recordLocked(h, e, h.srv.cfg.HistorySize)
	} else {
		// Not kept: a resume from before it must report the gap. When
		// the channel is removed, deletedFloor inherits this.
		ch.evictedUpTo = seq
	}
	for _, s := range ch.subs {
		if e.exclude != "" && s.t.socketID() == e.exclude {
			continue
		}
		s.t.deliver(e)
	}
	empty := len(ch.subs) == 0 && len(ch.hist) == 0
	ch.mu.Unlock()
	if empty {
		h.removeIfEmpty(ch)
	}
	h.srv.metrics.published.Add(1)
}

// cost approximates the memory an event holds in history (data, names and
// the two encodings built from them).
func (e *event) cost() int64 {
	return int64(2*len(e.data) + 2*len(e.name) + 2*len(e.channel) + 256)
}

// reserveLocked makes room for n bytes in the app's history budget,
// evicting this channel's oldest events if needed. false: the event cannot
// be kept (the budget is held by other channels until they expire).
func (h *hub) reserveLocked(ch *channel, n int64) bool {
	budget := h.srv.cfg.HistoryBytes
	for h.histBytes.Load()+n > budget && len(ch.hist) > 0 {
		ch.dropOldestLocked(h)
	}
	if h.histBytes.Load()+n > budget {
		return false
	}
	h.histBytes.Add(n)
	return true
}

func (ch *channel) dropOldestLocked(h *hub) {
	n := len(ch.hist)
	old := ch.hist[ch.histHead]
	ch.evictedUpTo = max(ch.evictedUpTo, old.seq)
	h.histBytes.Add(-old.cost())
	kept := make([]*event, 0, n-1)
	for i := 1; i < n; i++ {
		kept = append(kept, ch.hist[(ch.histHead+i)%n])
	}
	ch.hist, ch.histHead = kept, 0
	if len(kept) == 0 {
		ch.hist = nil
	}
}

// recordLocked appends e (its cost already reserved), evicting the oldest
// event when the ring is full.
func (ch *channel) recordLocked(h *hub, e *event, size int) {
	if len(ch.hist) < size {
		ch.hist = append(ch.hist, e)
		return
	}
	old := ch.hist[ch.histHead]
	ch.evictedUpTo = max(ch.evictedUpTo, old.seq)
	h.histBytes.Add(-old.cost())
	ch.hist[ch.histHead] = e
	ch.histHead = (ch.histHead + 1) % len(ch.hist)
}

// histLocked calls fn for each kept event, oldest first.
func (ch *channel) histLocked(fn func(e *event)) {
	n := len(ch.hist)
	for i := 0; i < n; i++ {
		fn(ch.hist[(ch.histHead+i)%n])
	}
}

// expireLocked drops events older than cutoff.
func (ch *channel) expireLocked(h *hub, cutoff time.Time) {
	n := len(ch.hist)
	drop := 0
	for drop < n && ch.hist[(ch.histHead+drop)%n].at.Before(cutoff) {
		h.histBytes.Add(-ch.hist[(ch.histHead+drop)%n].cost())
		drop++
	}
	if drop == 0 {
		return
	}
	kept := make([]*event, 0, n-drop)
	for i := drop; i < n; i++ {
		kept = append(kept, ch.hist[(ch.histHead+i)%n])
	}
	ch.evictedUpTo = max(ch.evictedUpTo, ch.hist[(ch.histHead+drop-1)%n].seq)
	ch.hist, ch.histHead = kept, 0
	if len(kept) == 0 {
		ch.hist = nil
	}
}

// removeIfEmpty deletes ch from the hub when it has neither subscribers nor
// history.
func (h *hub) removeIfEmpty(ch *channel) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead || len(ch.subs) > 0 || len(ch.hist) > 0 {
		return
	}
	ch.dead = true
	if h.channels[ch.name] == ch {
		delete(h.channels, ch.name)
	}
	if ch.hasRecord {
		h.histChannels--
	}
	h.deletedFloor = max(h.deletedFloor, ch.evictedUpTo)
}

// sweep expires history and removes empty channels.
func (h *hub) sweep(now time.Time) {
	cutoff := now.Add(-h.srv.cfg.HistoryTTL)
	h.mu.RLock()
	chans := make([]*channel, 0, len(h.channels))
	for _, ch := range h.channels {
		chans = append(chans, ch)
	}
	h.mu.RUnlock()
	for _, ch := range chans {
		ch.mu.Lock()
		ch.expireLocked(h, cutoff)
		empty := !ch.dead && len(ch.subs) == 0 && len(ch.hist) == 0
		ch.mu.Unlock()
		if empty {
			h.removeIfEmpty(ch)
		}
	}
}

// resumeFrom asks a subscribe to replay what followed an event id.
type resumeFrom struct {
	id string
}

// subscribeReq is a validated subscription request.
type subscribeReq struct {
	channel  string
	userID   string          // presence
	userInfo json.RawMessage // presence
	resume   *resumeFrom
	// succeeded builds the confirmation frame (nil: none, as for SSE);
	// members is the presence hash or nil.
	succeeded func(members map[string]*member) []byte
}

// subscribe adds t to a channel. Under the channel lock it queues, in
// order: the confirmation, the replay of missed events (if resume asked),
// and then live events, so a resumed subscriber sees no gap and no
// duplicate.
func (h *hub) subscribe(t transport, req subscribeReq) (*subscription, error) {
	ch := h.lockChannel(req.channel, true)
	kind := ch.kind
	newMember := false
	if kind == kindPresence && req.userID != "" {
		if ch.members == nil {
			ch.members = map[string]*member{}
		}
		m := ch.members[req.userID]
		if m == nil {
			if len(ch.members) >= h.srv.cfg.MaxPresenceMembers {
				empty := len(ch.subs) == 0 && len(ch.hist) == 0
				ch.mu.Unlock()
				if empty {
					h.removeIfEmpty(ch)
				}
				return nil, errs.New(errs.ResourceError, "presence channel %q is full (%d members)", req.channel, h.srv.cfg.MaxPresenceMembers)
			}
			m = &member{info: req.userInfo}
			ch.members[req.userID] = m
			newMember = true
		}
		m.conns++
	}
	s := &subscription{ch: ch, t: t, idx: len(ch.subs), userID: req.userID, upTo: h.seq.Load()}
	ch.subs = append(ch.subs, s)
	occupied := len(ch.subs) == 1
	if req.succeeded != nil {
		t.send(req.succeeded(ch.members))
	}
	if req.resume != nil {
		h.replayLocked(ch, t, req.resume.id, s.upTo)
	}
	if newMember {
		f := protocolFrame("pusher_internal:member_added", ch.name, memberJSON(req.userID, req.userInfo))
		for _, o := range ch.subs {
			if o != s {
				o.t.send(f)
			}
		}
	}
	ch.mu.Unlock()
	if occupied {
		h.srv.hooks.enqueue(h, hookEvent{Name: hookOccupied, Channel: req.channel})
	}
	if newMember {
		h.srv.hooks.enqueue(h, hookEvent{Name: hookMemberAdded, Channel: req.channel, UserID: req.userID})
	}
	h.srv.metrics.subscriptions.Add(1)
	return s, nil
}

// replayLocked queues the kept events after id (up to upTo) to t, or tells
// t the resume failed when events after id are no longer kept.
func (h *hub) replayLocked(ch *channel, t transport, id string, upTo uint64) {
	epoch, since, ok := parseEventID(id)
	switch {
	case !h.historyOn():
		t.resumeFailed(ch.name, "history is disabled")
		return
	case !ok || epoch != h.epoch || since > h.seq.Load():
		t.resumeFailed(ch.name, "unknown event id (the server restarted or the id is not from this server)")
		return
	case since < ch.evictedUpTo:
		t.resumeFailed(ch.name, "events after this id are no longer in history")
		return
	}
	ch.histLocked(func(e *event) {
		if e.seq > since && e.seq <= upTo {
			t.deliver(e)
		}
	})
}

// resume replays, for an existing subscription, the kept events between id
// and the moment it subscribed (the herald:resume message). Events after
// that were delivered live.
func (h *hub) resume(s *subscription, id string) {
	s.ch.mu.Lock()
	defer s.ch.mu.Unlock()
	h.replayLocked(s.ch, s.t, id, s.upTo)
}

// unsubscribe removes s from its channel.
func (h *hub) unsubscribe(s *subscription) {
	ch := s.ch
	ch.mu.Lock()
	last := len(ch.subs) - 1
	if s.idx > last || ch.subs[s.idx] != s {
		ch.mu.Unlock()
		return
	}
	ch.subs[s.idx] = ch.subs[last]
	ch.subs[s.idx].idx = s.idx
	ch.subs[last] = nil
	ch.subs = ch.subs[:last]
	if len(ch.subs) == 0 {
		ch.subs = nil
	}
	removedMember := false
	if m := ch.members[s.userID]; m != nil {
		m.conns--
		if m.conns == 0 {
			delete(ch.members, s.userID)
			removedMember = true
			f := protocolFrame("pusher_internal:member_removed", ch.name, `{"user_id":`+string(appendJSONString(nil, s.userID))+`}`)
			for _, o := range ch.subs {
				o.t.send(f)
			}
		}
	}
	vacated := len(ch.subs) == 0
	empty := vacated && len(ch.hist) == 0
	ch.mu.Unlock()
	if removedMember {
		h.srv.hooks.enqueue(h, hookEvent{Name: hookMemberRemoved, Channel: ch.name, UserID: s.userID})
	}
	if vacated {
		h.srv.hooks.enqueue(h, hookEvent{Name: hookVacated, Channel: ch.name})
	}
	if empty {
		h.removeIfEmpty(ch)
	}
}

func memberJSON(userID string, info json.RawMessage) string {
	b := append([]byte(`{"user_id":`), appendJSONString(nil, userID)...)
	if len(info) > 0 {
		b = append(b, `,"user_info":`...)
		b = append(b, info...)
	}
	return string(append(b, '}'))
}

// presenceJSON is the data of a presence channel's subscription_succeeded.
func presenceJSON(members map[string]*member) string {
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	b := []byte(`{"presence":{"ids":[`)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	b = append(b, `],"hash":{`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
		b = append(b, ':')
		if info := members[id].info; len(info) > 0 {
			b = append(b, info...)
		} else {
			b = append(b, "null"...)
		}
	}
	b = append(b, `},"count":`...)
	b = strconv.AppendInt(b, int64(len(ids)), 10)
	return string(append(b, "}}"...))
}

// channelInfo is what the HTTP API reports about a channel.
type channelInfo struct {
	name          string
	subscriptions int
	users         int
}

// info returns the occupied channels whose names start with prefix.
func (h *hub) info(prefix string) []channelInfo {
	h.mu.RLock()
	chans := make([]*channel, 0, len(h.channels))
	for name, ch := range h.channels {
		if strings.HasPrefix(name, prefix) {
			chans = append(chans, ch)
		}
	}
	h.mu.RUnlock()
	out := make([]channelInfo, 0, len(chans))
	for _, ch := range chans {
		ch.mu.Lock()
		ci := channelInfo{name: ch.name, subscriptions: len(ch.subs), users: len(ch.members)}
		ch.mu.Unlock()
		if ci.subscriptions > 0 {
			out = append(out, ci)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// channelInfo returns one channel's counts (zero when absent).
func (h *hub) channelInfo(name string) channelInfo {
	ch := h.lockChannel(name, false)
	if ch == nil {
		return channelInfo{name: name}
	}
	defer ch.mu.Unlock()
	return channelInfo{name: name, subscriptions: len(ch.subs), users: len(ch.members)}
}

// users returns a presence channel's user ids, sorted.
func (h *hub) users(name string) []string {
	ch := h.lockChannel(name, false)
	if ch == nil {
		return nil
	}
	defer ch.mu.Unlock()
	ids := make([]string, 0, len(ch.members))
	for id := range ch.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
