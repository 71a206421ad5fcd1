package realtime

import (
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// event is one channel event as every transport delivers it. It is
// immutable once dispatched; its encodings are built at most once and shared
// by every subscriber, so fan-out allocates nothing per subscriber.
type event struct {
	seq     uint64
	id      string // "{epoch}-{seq}", see eventID
	at      time.Time
	channel string
	name    string
	data    string // Pusher event data: a string (often JSON text)
	userID  string // sender of a client event on a presence channel
	exclude string // socket id that must not receive it ("" = none)

	wsOnce  sync.Once
	ws      []byte
	sseOnce sync.Once
	sse     []byte
}

// eventID formats an id; ids of one app increase with seq.
func eventID(epoch string, seq uint64) string {
	return epoch + "-" + strconv.FormatUint(seq, 10)
}

// parseEventID splits an id made by eventID.
func parseEventID(id string) (epoch string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return id[:i], seq, true
}

// wsFrame is the Pusher protocol message:
// {"event":NAME,"channel":CHANNEL,"data":DATA,"id":ID[,"user_id":USER]}.
// "id" is Herald's resume extension; Pusher clients ignore it.
func (e *event) wsFrame() []byte {
	e.wsOnce.Do(func() {
		b := make([]byte, 0, len(e.data)+len(e.name)+len(e.channel)+len(e.id)+48)
		b = append(b, `{"event":`...)
		b = appendJSONString(b, e.name)
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, e.channel)
		b = append(b, `,"data":`...)
		b = appendJSONString(b, e.data)
		if e.id != "" {
			b = append(b, `,"id":`...)
			b = appendJSONString(b, e.id)
		}
		if e.userID != "" {
			b = append(b, `,"user_id":`...)
			b = appendJSONString(b, e.userID)
		}
		e.ws = append(b, '}')
	})
	return e.ws
}

// sseFrame is the text/event-stream record: id, event and one data line per
// line of data.
func (e *event) sseFrame() []byte {
	e.sseOnce.Do(func() {
		e.sse = appendSSE(make([]byte, 0, len(e.data)+len(e.name)+len(e.id)+32), e.id, e.name, e.data)
	})
	return e.sse
}

func appendSSE(b []byte, id, name, data string) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, sanitizeSSELine(name)...)
	b = append(b, '\n')
	for {
		line, rest, more := cutLine(data)
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
		if !more {
			break
		}
		data = rest
	}
	return append(b, '\n')
}

// cutLine splits at the first \n, \r\n or \r.
func cutLine(s string) (line, rest string, more bool) {
	i := strings.IndexAny(s, "\r\n")
	if i < 0 {
		return s, "", false
	}
	if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
		return s[:i], s[i+2:], true
	}
	return s[:i], s[i+1:], true
}

func sanitizeSSELine(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; U+2028 and U+2029 are escaped so the text is also valid JavaScript.
func appendJSONString(b []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexd[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// protocolFrame builds a Pusher protocol message whose data is dataJSON
// encoded as a string (as Pusher does for connection_established,
// subscription_succeeded, member events, pong).
func protocolFrame(name, channel, dataJSON string) []byte {
	b := make([]byte, 0, len(dataJSON)+len(name)+len(channel)+40)
	b = append(b, `{"event":`...)
	b = appendJSONString(b, name)
	if channel != "" {
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, channel)
	}
	b = append(b, `,"data":`...)
	b = appendJSONString(b, dataJSON)
	return append(b, '}')
}

// errorFrame is pusher:error with an object as data:
// {"event":"pusher:error","data":{"message":MSG,"code":CODE}}; code 0 is
// sent as null (Pusher does so for errors without a code).
func errorFrame(code int, msg string) []byte {
	b := make([]byte, 0, len(msg)+64)
	b = append(b, `{"event":"pusher:error","data":{"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"code":`...)
	if code == 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "}}"...)
}
