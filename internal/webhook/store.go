package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// recordKind names subscription records in the broker's metadata.
const recordKind = "webhook"

// record is a subscription as stored (Broker.PutRecord).
type record struct {
	Sub Subscription `json:"sub"`
	// PrevSecret still signs deliveries until PrevUntil (secret rotation).
	PrevSecret string    `json:"prev_secret,omitempty"`
	PrevUntil  time.Time `json:"prev_until,omitzero"`
}

func (s *Service) persist(ctx context.Context, rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding subscription %s: %w", rec.Sub.ID, err)
	}
	if err := s.b.PutRecord(ctx, recordKind, rec.Sub.ID, data); err != nil {
		return fmt.Errorf("storing subscription %s: %w", rec.Sub.ID, err)
	}
	return nil
}

func (s *Service) loadRecords() ([]record, error) {
	var out []record
	for id, data := range s.b.Records(recordKind) {
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("decoding subscription %s: %w", id, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// Queue names of a subscription.
func queueName(id string) string { return "herald.webhook." + id }
func deadName(id string) string  { return "herald.webhook." + id + ".dead" }

// retryExchange is the delayed exchange (one per vhost) failed attempts are
// republished to, with x-delay; it routes them back to the subscription's
// queue, which is bound to it with its own name as the key.
const retryExchange = "herald.webhook.retry"

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewSecret returns a Standard Webhooks secret: "whsec_" + base64 of 24
// random bytes.
func NewSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return secretPrefix + base64.StdEncoding.EncodeToString(b[:])
}

const secretPrefix = "whsec_"

// signingKey decodes a Standard Webhooks secret.
func signingKey(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil {
		return nil, fmt.Errorf("secret must be %q followed by base64: %v", secretPrefix, err)
	}
	if len(k) < 16 || len(k) > 64 {
		return nil, fmt.Errorf("secret key must be 16 to 64 bytes, got %d", len(k))
	}
	return k, nil
}
