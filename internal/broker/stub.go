package broker

// TEMPORARY: bodies being written; faces compile against the API meanwhile.

import (
	"context"

	"github.com/heraldhq/herald/internal/errs"
)

var errTODO = errs.New(errs.NotImplemented, "not implemented yet")

type core struct{ cfg Config }
type settler interface {
	ack() error
	nack(bool) error
}
type limiterState struct{ n int }
type consumerState struct{ tag string }

func newLimiter(n int) *Limiter        { return &Limiter{limiterState{n}} }
func (l *limiterState) setLimit(n int) { l.n = n }
func (c *consumerState) cancel()       {}

func newBroker(cfg Config) (*Broker, error)               { return &Broker{core{cfg.withDefaults()}}, nil }
func (b *core) start(context.Context) error               { return errTODO }
func (b *core) stop(context.Context)                      {}
func (b *core) vhosts() []VHostInfo                       { return nil }
func (b *core) addVHost(context.Context, string) error    { return errTODO }
func (b *core) deleteVHost(context.Context, string) error { return errTODO }
func (b *core) declareExchange(context.Context, string, ExchangeSpec, bool) (ExchangeInfo, error) {
	return ExchangeInfo{}, errTODO
}
func (b *core) deleteExchange(context.Context, string, string, bool) error { return errTODO }
func (b *core) exchange(string, string) (ExchangeInfo, error)              { return ExchangeInfo{}, errTODO }
func (b *core) exchanges(string) []ExchangeInfo                            { return nil }
func (b *core) declareQueue(context.Context, string, QueueSpec, bool) (QueueInfo, error) {
	return QueueInfo{}, errTODO
}
func (b *core) deleteQueue(context.Context, string, string, bool, bool, string) (int, error) {
	return 0, errTODO
}
func (b *core) purgeQueue(context.Context, string, string, string) (int, error) { return 0, errTODO }
func (b *core) queueInfo(string, string) (QueueInfo, error)                     { return QueueInfo{}, errTODO }
func (b *core) queues(string) []QueueInfo                                       { return nil }
func (b *core) bind(context.Context, string, Binding) error                     { return errTODO }
func (b *core) unbind(context.Context, string, Binding) error                   { return errTODO }
func (b *core) bindings(string) []BindingInfo                                   { return nil }
func (b *core) publish(context.Context, Publishing) (PublishResult, error) {
	return PublishResult{}, errTODO
}
func (b *core) publishAsync(Publishing, func(error)) (PublishResult, error) {
	return PublishResult{}, errTODO
}
func (b *core) consume(context.Context, string, string, ConsumeOptions) (*Consumer, error) {
	return nil, errTODO
}
func (b *core) get(context.Context, string, string, bool, string) (*Delivery, error) {
	return nil, errTODO
}
func (b *core) releaseOwner(context.Context, string)                   {}
func (b *core) users() []User                                          { return nil }
func (b *core) putUser(context.Context, User) error                    { return errTODO }
func (b *core) deleteUser(context.Context, string) error               { return errTODO }
func (b *core) authenticate(string, string) (User, error)              { return User{}, errTODO }
func (b *core) permissions() []Permission                              { return nil }
func (b *core) setPermission(context.Context, Permission) error        { return errTODO }
func (b *core) deletePermission(context.Context, string, string) error { return errTODO }
func (b *core) authorize(string, string, Access, string) error         { return errTODO }
func (b *core) registerConn(Conn) func()                               { return func() {} }
func (b *core) connections() []ConnInfo                                { return nil }
func (b *core) closeConn(string, string) error                         { return errTODO }
func (b *core) onAlarm(func(bool, string)) func()                      { return func() {} }
func (b *core) overview() Overview                                     { return Overview{} }
