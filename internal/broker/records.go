package broker

import (
	"context"
	"encoding/json"
	"maps"

	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

// Records are small JSON documents that faces persist in the broker's
// replicated metadata bucket (webhook subscriptions, for example), so they
// live and replicate with the rest of the topology. A record is named by a
// kind and an id, both [A-Za-z0-9_-]+; it is stored under the key
// "r.<kind>.<id>".

func recordKey(kind, id string) (string, error) {
	for _, s := range [2]string{kind, id} {
		if s == "" || len(s) > 128 {
			return "", errs.New(errs.BadArgument, "record kind and id must be 1 to 128 bytes")
		}
		for _, c := range []byte(s) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return "", errs.New(errs.BadArgument, "record kind and id must match [A-Za-z0-9_-]+")
			}
		}
	}
	return "r." + kind + "." + id, nil
}

// PutRecord stores a JSON record (creating or replacing it) and waits until it
// is stored; Records reflects it when PutRecord returns.
func (b *Broker) PutRecord(ctx context.Context, kind, id string, data []byte) error {
	key, err := recordKey(kind, id)
	if err != nil {
		return err
	}
	if !json.Valid(data) {
		return errs.New(errs.BadArgument, "record %s/%s is not valid JSON", kind, id)
	}
	if err := b.running(); err != nil {
		return err
	}
	return b.putMeta(ctx, key, json.RawMessage(data))
}

// DeleteRecord deletes a record; deleting a missing record is not an error.
func (b *Broker) DeleteRecord(ctx context.Context, kind, id string) error {
	key, err := recordKey(kind, id)
	if err != nil {
		return err
	}
	if err := b.running(); err != nil {
		return err
	}
	return b.deleteMeta(ctx, key)
}

// Records returns a copy of the records of kind, by id.
func (b *Broker) Records(kind string) map[string][]byte {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return maps.Clone(b.records[kind])
}

func (b *core) applyRecordLocked(e engine.Entry) {
	_, kind, id, ok := splitKey(e.Key)
	if !ok || kind == "" {
		return
	}
	if e.Deleted {
		delete(b.records[kind], id)
		return
	}
	m := b.records[kind]
	if m == nil {
		m = map[string][]byte{}
		b.records[kind] = m
	}
	m[id] = e.Value
}
