package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Raw JetStream API requests. The hot paths (get, delete, scan, purge, info)
// skip the jetstream package, which needs a Stream handle (one extra info
// request) per call; the JSON shapes are JetStream's wire API, stable across
// server versions.

const (
	apiStreamInfo = "$JS.API.STREAM.INFO."
	apiPurge      = "$JS.API.STREAM.PURGE."
	apiMsgDelete  = "$JS.API.STREAM.MSG.DELETE."
	apiMsgGet     = "$JS.API.STREAM.MSG.GET."
	apiDirectGet  = "$JS.API.DIRECT.GET."

	// JetStream error codes (err_code) we map.
	errCodeNoMessageFound   = 10037
	errCodeSequenceNotFound = 10043
	errCodeMsgDeleteFailed  = 10057
	errCodeStreamNotFound   = 10059
	errCodeStoreFailed      = 10077

	hdrStatus     = "Status"
	hdrNumPending = "Nats-Num-Pending"
)

// apiError is JetStream's error object.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     uint16 `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("jetstream: %s (status %d, err_code %d)", e.Description, e.Code, e.ErrCode)
}

// apiResponse is embedded in every response type.
type apiResponse struct {
	Error *apiError `json:"error,omitempty"`
}

type streamState struct {
	Msgs     uint64 `json:"messages"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

type streamInfoResponse struct {
	apiResponse
	Config struct {
		Replicas int `json:"num_replicas"`
	} `json:"config"`
	State streamState `json:"state"`
}

type purgeRequest struct {
	Filter string `json:"filter,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
}

type purgeResponse struct {
	apiResponse
	Success bool   `json:"success"`
	Purged  uint64 `json:"purged"`
}

type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

type msgGetResponse struct {
	apiResponse
	Message *struct {
		Subject string    `json:"subject"`
		Seq     uint64    `json:"seq"`
		Data    []byte    `json:"data"`
		Time    time.Time `json:"time"`
	} `json:"message"`
}

// withTimeout bounds ctx by apiTimeout unless it already has a deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, apiTimeout)
}

// request sends one API request and decodes the response into resp.
func (r *run) request(ctx context.Context, subject string, body []byte, resp any) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, err := r.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return mapNatsErr(err)
	}
	if err := json.Unmarshal(m.Data, resp); err != nil {
		return fmt.Errorf("engine: decoding %s response: %w", subject, err)
	}
	return nil
}

// mapNatsErr turns connection-level errors into engine errors.
func mapNatsErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		return ErrStopped
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("engine: no responders (log missing or JetStream unavailable): %w", ErrNotFound)
	}
	return err
}

// logErr maps an API error about log name to an engine error.
func logErr(name string, e *apiError) error {
	if e == nil {
		return nil
	}
	if e.ErrCode == errCodeStreamNotFound {
		return fmt.Errorf("engine: log %q: %w", name, ErrNotFound)
	}
	return fmt.Errorf("engine: log %q: %w", name, e)
}

// streamInfo fetches the state of log name.
func (r *run) streamInfo(ctx context.Context, name string) (*streamInfoResponse, error) {
	var resp streamInfoResponse
	if err := r.request(ctx, apiStreamInfo+name, nil, &resp); err != nil {
		return nil, fmt.Errorf("engine: log %q info: %w", name, err)
	}
	if resp.Error != nil {
		return nil, logErr(name, resp.Error)
	}
	return &resp, nil
}

// deleteBody is the body of a message delete request (no secure erase).
func deleteBody(buf []byte, seq uint64) []byte {
	buf = append(buf[:0], `{"seq":`...)
	buf = strconv.AppendUint(buf, seq, 10)
	return append(buf, `,"no_erase":true}`...)
}

// deleteResult interprets a delete response; a message already gone is not
// an error.
func deleteResult(name string, data []byte) error {
	if bytes.Contains(data, []byte(`"success":true`)) {
		return nil
	}
	var resp apiResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return fmt.Errorf("engine: decoding delete response: %w", err)
	}
	if resp.Error == nil {
		return fmt.Errorf("engine: log %q: delete failed: %s", name, data)
	}
	switch {
	case resp.Error.ErrCode == errCodeSequenceNotFound, resp.Error.ErrCode == errCodeNoMessageFound:
		return nil
	case resp.Error.ErrCode == errCodeMsgDeleteFailed &&
		(strings.Contains(resp.Error.Description, "no message found") || strings.Contains(resp.Error.Description, "EOF")):
		return nil
	}
	return logErr(name, resp.Error)
}

// directMsg decodes a direct-get reply. ok is false for a status reply, whose
// code is returned (e.g. "404", "204" end of batch).
func directMsg(m *nats.Msg) (msg Msg, status string, err error) {
	if st := m.Header.Get(hdrStatus); st != "" {
		return Msg{}, st, nil
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return Msg{}, "", fmt.Errorf("engine: bad %s header: %w", jetstream.SequenceHeader, err)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return Msg{}, "", fmt.Errorf("engine: bad %s header: %w", jetstream.TimeStampHeaer, err)
	}
	return Msg{Subject: m.Header.Get(jetstream.SubjectHeader), Seq: seq, Time: ts, Data: m.Data}, "", nil
}

// validName reports whether s is a valid log or bucket name.
func validName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func checkName(kind, s string) error {
	if !validName(s) {
		return fmt.Errorf("engine: invalid %s name %q: want [A-Za-z0-9_-]+", kind, s)
	}
	return nil
}
