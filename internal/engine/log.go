package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// scanBatch and scanMaxBytes bound one batched direct get in Scan.
	scanBatch    = 2048
	scanMaxBytes = 4 << 20
	maxReplicas  = 5
)

// streamConfig maps a LogConfig to a JetStream stream. Retention is by limits
// and old messages are discarded (MaxAge, MaxMsgsPerSubject), except that a
// log with MaxBytes refuses appends when full (discard new → ErrLogLimit),
// so a byte cap never silently drops unconsumed messages.
func streamConfig(cfg LogConfig) (jetstream.StreamConfig, error) {
	if err := checkName("log", cfg.Name); err != nil {
		return jetstream.StreamConfig{}, err
	}
	switch {
	case len(cfg.Subjects) == 0:
		return jetstream.StreamConfig{}, fmt.Errorf("engine: log %q: LogConfig.Subjects is empty", cfg.Name)
	case cfg.Replicas < 0 || cfg.Replicas > maxReplicas:
		return jetstream.StreamConfig{}, fmt.Errorf("engine: log %q: LogConfig.Replicas %d: want 0..%d", cfg.Name, cfg.Replicas, maxReplicas)
	case cfg.MaxBytes < 0:
		return jetstream.StreamConfig{}, fmt.Errorf("engine: log %q: LogConfig.MaxBytes %d is negative", cfg.Name, cfg.MaxBytes)
	case cfg.MaxAge < 0:
		return jetstream.StreamConfig{}, fmt.Errorf("engine: log %q: LogConfig.MaxAge %v is negative", cfg.Name, cfg.MaxAge)
	case cfg.MaxMsgsPerSubject < 0:
		return jetstream.StreamConfig{}, fmt.Errorf("engine: log %q: LogConfig.MaxMsgsPerSubject %d is negative", cfg.Name, cfg.MaxMsgsPerSubject)
	}
	sc := jetstream.StreamConfig{
		Name:              cfg.Name,
		Subjects:          cfg.Subjects,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          max(cfg.Replicas, 1),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            cfg.MaxAge,
		MaxMsgsPerSubject: -1,
		AllowDirect:       true,
	}
	if cfg.Memory {
		sc.Storage = jetstream.MemoryStorage
	}
	if cfg.MaxBytes > 0 {
		sc.MaxBytes = cfg.MaxBytes
		sc.Discard = jetstream.DiscardNew
	}
	if cfg.MaxMsgsPerSubject > 0 {
		sc.MaxMsgsPerSubject = cfg.MaxMsgsPerSubject
	}
	return sc, nil
}

func (e *impl) ensureLog(ctx context.Context, cfg LogConfig) error {
	r, err := e.running()
	if err != nil {
		return err
	}
	sc, err := streamConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err = retryPlacement(ctx, func() error {
		_, err := r.js.CreateOrUpdateStream(ctx, sc)
		return err
	})
	if err != nil {
		return fmt.Errorf("engine: ensuring log %q: %w", cfg.Name, mapJSErr(err))
	}
	if r.sync != nil {
		// The log's files and directories reach the disk before it is used.
		r.sync.setLog(cfg.Name, !cfg.Memory)
		if err := r.sync.wait(ctx, cfg.Name, true); err != nil {
			return fmt.Errorf("engine: ensuring log %q: %w", cfg.Name, err)
		}
	}
	return nil
}

// errCodeNoPeers is JetStream's "no suitable peers for placement".
const errCodeNoPeers = 10005

// retryPlacement runs f until it succeeds, fails for another reason than a
// lack of peers, or ctx ends. Right after a cluster forms the meta leader may
// not know every peer yet, so replicated creates fail for a moment.
func retryPlacement(ctx context.Context, f func() error) error {
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for {
		err := f()
		var ae *jetstream.APIError
		if err == nil || !errors.As(err, &ae) || ae.ErrorCode != errCodeNoPeers {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}

func (e *impl) deleteLog(ctx context.Context, name string) error {
	r, err := e.running()
	if err != nil {
		return err
	}
	if err := checkName("log", name); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err = r.js.DeleteStream(ctx, name)
	r.del.forget(name)
	if r.sync != nil {
		r.sync.forget(name)
	}
	if err != nil {
		return fmt.Errorf("engine: deleting log %q: %w", name, mapJSErr(err))
	}
	return nil
}

// mapJSErr maps jetstream package errors to engine errors.
func mapJSErr(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		return ErrStopped
	}
	return err
}

func (e *impl) append(ctx context.Context, subject string, data []byte) (uint64, error) {
	r, err := e.running()
	if err != nil {
		return 0, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		m, err := r.nc.RequestWithContext(ctx, subject, data)
		if errors.Is(err, nats.ErrNoResponders) {
			if !e.clustered() || attempt == pubRetryAttempts {
				return 0, fmt.Errorf("engine: appending to %q: no log captures the subject: %w", subject, ErrNotFound)
			}
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("engine: appending to %q: %w", subject, ctx.Err())
			case <-time.After(pubRetryWait):
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("engine: appending to %q: %w", subject, mapNatsErr(err))
		}
		seq, err := parseAck(subject, m.Data)
		if err == nil && r.sync != nil {
			err = r.sync.wait(ctx, ackStream(m.Data), false)
		}
		return seq, err
	}
}

func (e *impl) appendAsync(subject string, data []byte, done func(uint64, error)) error {
	r, err := e.running()
	if err != nil {
		return err
	}
	return r.pub.publish(subject, data, done)
}

func (e *impl) get(ctx context.Context, log string, seq uint64) (Msg, error) {
	r, err := e.running()
	if err != nil {
		return Msg{}, err
	}
	if err := checkName("log", log); err != nil {
		return Msg{}, err
	}
	if seq == 0 {
		return Msg{}, fmt.Errorf("engine: log %q seq 0: %w", log, ErrNotFound)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	body := strconv.AppendUint([]byte(`{"seq":`), seq, 10)
	body = append(body, '}')
	m, err := r.nc.RequestWithContext(ctx, apiDirectGet+log, body)
	if errors.Is(err, nats.ErrNoResponders) {
		// No direct-get responder: the log is missing (or was created
		// without direct access); the leader API tells which.
		return r.leaderGet(ctx, log, seq, "")
	}
	if err != nil {
		return Msg{}, fmt.Errorf("engine: getting %s/%d: %w", log, seq, mapNatsErr(err))
	}
	msg, status, err := directMsg(m)
	switch {
	case err != nil:
		return Msg{}, err
	case status == "404":
		if e.clustered() {
			// Direct gets may be answered by a replica a little behind the
			// leader; confirm with the leader before reporting a miss.
			return r.leaderGet(ctx, log, seq, "")
		}
		return Msg{}, fmt.Errorf("engine: %s/%d: %w", log, seq, ErrNotFound)
	case status != "":
		return Msg{}, fmt.Errorf("engine: getting %s/%d: status %s %s", log, seq, status, m.Header.Get("Description"))
	}
	return msg, nil
}

// leaderGet reads through the stream leader: message seq, or with nextFor
// the first message at or after seq whose subject matches nextFor.
func (r *run) leaderGet(ctx context.Context, log string, seq uint64, nextFor string) (Msg, error) {
	body, _ := json.Marshal(msgGetRequest{Seq: seq, NextFor: nextFor})
	var resp msgGetResponse
	if err := r.request(ctx, apiMsgGet+log, body, &resp); err != nil {
		return Msg{}, fmt.Errorf("engine: getting %s/%d: %w", log, seq, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == errCodeNoMessageFound {
			return Msg{}, fmt.Errorf("engine: %s/%d: %w", log, seq, ErrNotFound)
		}
		return Msg{}, logErr(log, resp.Error)
	}
	if resp.Message == nil {
		return Msg{}, fmt.Errorf("engine: %s/%d: empty response", log, seq)
	}
	m := resp.Message
	return Msg{Subject: m.Subject, Seq: m.Seq, Time: m.Time, Data: m.Data}, nil
}

func (e *impl) deleteMsg(ctx context.Context, log string, seq uint64) error {
	r, err := e.running()
	if err != nil {
		return err
	}
	if err := checkName("log", log); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := r.nc.RequestWithContext(ctx, apiMsgDelete+log, deleteBody(nil, seq))
	if err != nil {
		return fmt.Errorf("engine: deleting %s/%d: %w", log, seq, mapNatsErr(err))
	}
	return deleteResult(log, m.Data)
}

func (e *impl) deleteAsync(log string, seq uint64) {
	r, err := e.running()
	if err != nil {
		e.log.Debug("delete dropped: engine stopped", "log", log, "seq", seq)
		return
	}
	r.del.add(log, seq)
}

func (e *impl) deleteAsyncMany(log string, seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	r, err := e.running()
	if err != nil {
		e.log.Debug("deletes dropped: engine stopped", "log", log, "count", len(seqs))
		return
	}
	r.del.add(log, seqs...)
}

func (e *impl) deleteAsyncBelow(log, subject string, floor uint64, seqs []uint64) {
	r, err := e.running()
	if err != nil {
		e.log.Debug("deletes dropped: engine stopped", "log", log, "count", len(seqs))
		return
	}
	if floor == 0 || e.clustered() {
		e.deleteAsyncMany(log, seqs)
		return
	}
	r.del.addBelow(log, subject, floor, seqs)
}

func (e *impl) purge(ctx context.Context, log, subject string, upTo uint64) (uint64, error) {
	r, err := e.running()
	if err != nil {
		return 0, err
	}
	if err := checkName("log", log); err != nil {
		return 0, err
	}
	return r.purge(ctx, log, subject, upTo)
}

func (r *run) purge(ctx context.Context, log, subject string, upTo uint64) (uint64, error) {
	body, _ := json.Marshal(purgeRequest{Filter: subject, Seq: upTo})
	var resp purgeResponse
	if err := r.request(ctx, apiPurge+log, body, &resp); err != nil {
		return 0, fmt.Errorf("engine: purging log %q: %w", log, err)
	}
	if resp.Error != nil {
		return 0, logErr(log, resp.Error)
	}
	return resp.Purged, nil
}

func (e *impl) lastSeq(ctx context.Context, log string) (uint64, error) {
	r, err := e.running()
	if err != nil {
		return 0, err
	}
	if err := checkName("log", log); err != nil {
		return 0, err
	}
	info, err := r.streamInfo(ctx, log)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

type directBatchRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch"`
	MaxBytes int    `json:"max_bytes"`
}

// scan reads with batched direct gets (no consumer is created). In a cluster
// a replica may answer a little behind the leader, so the end of the range is
// confirmed with the leader before returning.
func (e *impl) scan(ctx context.Context, log, filter string, from uint64, fn func(Msg) error) (uint64, error) {
	r, err := e.running()
	if err != nil {
		return 0, err
	}
	if err := checkName("log", log); err != nil {
		return 0, err
	}
	// Each request is bounded by apiTimeout, ctx by the whole scan: a log
	// between leaders (its leader just went away) fails a request in
	// seconds, for the caller to try again, rather than hold it for ctx.
	rctx, cancel := context.WithTimeout(ctx, apiTimeout)
	info, err := r.streamInfo(rctx, log)
	cancel()
	if err != nil {
		return 0, err
	}
	target := info.State.LastSeq
	from = max(from, 1)
	if from > target {
		return from - 1, nil
	}
	next := max(from, info.State.FirstSeq)

	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, fmt.Errorf("engine: scanning log %q: %w", log, mapNatsErr(err))
	}
	defer func() { _ = sub.Unsubscribe() }()
	leaderFilter := filter
	if leaderFilter == "" {
		leaderFilter = ">"
	}
	for next <= target {
		if err := r.scanDirect(ctx, sub, log, filter, &next, target, fn); err != nil {
			return 0, err
		}
		if next > target || !e.clustered() {
			break
		}
		rctx, cancel := context.WithTimeout(ctx, apiTimeout)
		m, err := r.leaderGet(rctx, log, next, leaderFilter)
		cancel()
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return 0, err
		}
		if m.Seq > target {
			break
		}
		if err := fn(m); err != nil {
			return 0, err
		}
		next = m.Seq + 1
	}
	return target, nil
}

// scanDirect calls fn for messages from *next up to target with batched direct
// gets until the responder has nothing more; *next advances past each
// delivered message.
func (r *run) scanDirect(ctx context.Context, sub *nats.Subscription, log, filter string, next *uint64, target uint64, fn func(Msg) error) error {
	for *next <= target {
		body, _ := json.Marshal(directBatchRequest{
			Seq:      *next,
			NextFor:  filter,
			Batch:    int(min(uint64(scanBatch), target-*next+1)),
			MaxBytes: scanMaxBytes,
		})
		if err := r.nc.PublishRequest(apiDirectGet+log, sub.Subject, body); err != nil {
			return fmt.Errorf("engine: scanning log %q: %w", log, mapNatsErr(err))
		}
		more, err := r.scanBatch(ctx, sub, log, next, target, fn)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// scanBatch reads one batch reply; more reports whether the responder has
// further matching messages at or below target.
func (r *run) scanBatch(ctx context.Context, sub *nats.Subscription, log string, next *uint64, target uint64, fn func(Msg) error) (more bool, err error) {
	bctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	past := false
	for {
		m, err := sub.NextMsgWithContext(bctx)
		if err != nil {
			return false, fmt.Errorf("engine: scanning log %q: %w", log, mapNatsErr(err))
		}
		msg, status, err := directMsg(m)
		switch {
		case err != nil:
			return false, err
		case status == "":
			if msg.Seq > target {
				past = true
				continue
			}
			if msg.Seq < *next {
				continue // not expected: replies arrive in order
			}
			if err := fn(msg); err != nil {
				return false, err
			}
			*next = msg.Seq + 1
		case status == "204": // end of batch
			return !past && m.Header.Get(hdrNumPending) != "0", nil
		case status == "404":
			return false, nil
		case status == "503":
			return false, fmt.Errorf("engine: scanning log %q: %w", log, ErrNotFound)
		default:
			return false, fmt.Errorf("engine: scanning log %q: status %s %s", log, status, m.Header.Get("Description"))
		}
	}
}
