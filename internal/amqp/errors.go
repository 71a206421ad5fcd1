package amqp

import (
	"errors"
	"fmt"

	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/errs"
)

// amqpError is an AMQP exception: a channel exception closes the channel,
// a connection exception (wire.IsHardError) the connection.
type amqpError struct {
	code              uint16
	text              string // without the "NOT_FOUND - " prefix
	classID, methodID uint16 // the method that failed, 0 if none
}

func (e *amqpError) Error() string {
	return fmt.Sprintf("%d %s - %s", e.code, wire.ReplyText(e.code), e.text)
}

// hard reports whether the exception closes the connection.
func (e *amqpError) hard() bool { return wire.IsHardError(e.code) }

// replyText is the reply-text RabbitMQ would send: "NOT_FOUND - no queue 'q'".
func (e *amqpError) replyText() string {
	s := wire.ReplyText(e.code) + " - " + e.text
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

func newError(code uint16, format string, args ...any) *amqpError {
	return &amqpError{code: code, text: fmt.Sprintf(format, args...)}
}

// asAMQPError maps any error to an AMQP exception through the errs catalog;
// protocol errors of the wire codec keep their code.
func asAMQPError(err error) *amqpError {
	var ae *amqpError
	if errors.As(err, &ae) {
		return ae
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return &amqpError{code: we.Code, text: we.Text}
	}
	return &amqpError{code: errs.KindOf(err).AMQPCode(), text: errs.Message(err)}
}

// forMethod sets the failing method of e if it has none.
func (e *amqpError) forMethod(m wire.Method) *amqpError {
	if m != nil && e.classID == 0 {
		e.classID, e.methodID = m.ID()
	}
	return e
}
