package engine

// TEMPORARY: replaced by the implementation.

import "context"

type impl struct{ cfg Config }
type tailImpl struct{}
type kvImpl struct{}

func newEngine(cfg Config) (*Engine, error)                                   { return &Engine{impl{cfg}}, nil }
func (e *impl) start(context.Context) error                                   { return ErrStopped }
func (e *impl) stop(context.Context)                                          {}
func (e *impl) clustered() bool                                               { return false }
func (e *impl) nodeName() string                                              { return "" }
func (e *impl) ensureLog(context.Context, LogConfig) error                    { return ErrStopped }
func (e *impl) deleteLog(context.Context, string) error                       { return ErrStopped }
func (e *impl) append(context.Context, string, []byte) (uint64, error)        { return 0, ErrStopped }
func (e *impl) appendAsync(string, []byte, func(uint64, error)) error         { return ErrStopped }
func (e *impl) get(context.Context, string, uint64) (Msg, error)              { return Msg{}, ErrStopped }
func (e *impl) deleteMsg(context.Context, string, uint64) error               { return ErrStopped }
func (e *impl) deleteAsync(string, uint64)                                    {}
func (e *impl) purge(context.Context, string, string, uint64) (uint64, error) { return 0, ErrStopped }
func (e *impl) lastSeq(context.Context, string) (uint64, error)               { return 0, ErrStopped }
func (e *impl) scan(context.Context, string, string, uint64, func(Msg) error) (uint64, error) {
	return 0, ErrStopped
}
func (e *impl) tail(context.Context, string, string, uint64, func(Msg)) (*Tail, error) {
	return nil, ErrStopped
}
func (t *tailImpl) stop()                                                 {}
func (e *impl) kv(context.Context, KVConfig) (*KV, error)                 { return nil, ErrStopped }
func (kv *kvImpl) get(context.Context, string) (Entry, error)             { return Entry{}, ErrStopped }
func (kv *kvImpl) put(context.Context, string, []byte) (uint64, error)    { return 0, ErrStopped }
func (kv *kvImpl) create(context.Context, string, []byte) (uint64, error) { return 0, ErrStopped }
func (kv *kvImpl) update(context.Context, string, []byte, uint64) (uint64, error) {
	return 0, ErrStopped
}
func (kv *kvImpl) delete(context.Context, string) error          { return ErrStopped }
func (kv *kvImpl) list(context.Context, string) ([]Entry, error) { return nil, ErrStopped }
func (kv *kvImpl) watch(context.Context, string, func(Entry), func()) (func(), error) {
	return nil, ErrStopped
}
