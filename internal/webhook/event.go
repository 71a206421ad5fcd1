package webhook

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/route"
)

// ceHeader prefixes CloudEvents attributes in AMQP headers (CloudEvents
// AMQP binding, application-properties prefix "cloudEvents_").
const ceHeader = "cloudEvents_"

// Core attributes other than datacontenttype, which travels as the
// content-type property.
var ceCore = []string{"specversion", "id", "source", "type", "subject", "time", "dataschema"}

func headerString(h broker.Table, name string) string {
	switch v := h[ceHeader+name].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	}
	return ""
}

// structuredEvent encodes a stored message as a structured-mode CloudEvent
// (JSON). Messages without cloudEvents_* headers (published over AMQP, say)
// get a synthesized one: id = message-id or the webhook-id, type = routing
// key, source = /herald/<vhost>/<exchange> (path-escaped), time = the timestamp property.
func structuredEvent(m *broker.Message, ev *prepared, vhost string) []byte {
	h := m.Properties.Headers
	b := make([]byte, 0, len(m.Body)*4/3+320)
	field := func(name, v string) {
		if v == "" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
		b = append(b, ':')
		b = appendJSONString(b, v)
	}
	b = append(b, '{')
	field("specversion", cmp.Or(headerString(h, "specversion"), "1.0"))
	field("id", cmp.Or(headerString(h, "id"), cmp.Or(m.Properties.MessageID, ev.webhookID)))
	field("source", cmp.Or(headerString(h, "source"), "/herald/"+url.PathEscape(vhost)+"/"+url.PathEscape(ev.exchange)))
	field("type", cmp.Or(headerString(h, "type"), ev.routingKey))
	field("subject", headerString(h, "subject"))
	t := headerString(h, "time")
	if t == "" && !m.Properties.Timestamp.IsZero() {
		t = m.Properties.Timestamp.UTC().Format(time.RFC3339)
	}
	field("time", t)
	field("dataschema", headerString(h, "dataschema"))
	field("datacontenttype", m.Properties.ContentType)
	var ext []string
	for k := range h {
		if name, ok := strings.CutPrefix(k, ceHeader); ok && validExtName(name) && !slices.Contains(ceCore, name) && name != "datacontenttype" && name != "data" && name != "data_base64" {
			ext = append(ext, name)
		}
	}
	slices.Sort(ext)
	for _, name := range ext {
		b = append(b, ',')
		b = appendJSONString(b, name)
		b = append(b, ':')
		b = appendJSONValue(b, h[ceHeader+name])
	}
	if len(m.Body) > 0 {
		mt := mediaType(m.Properties.ContentType)
		switch {
		case (mt == "" || isJSONType(mt)) && json.Valid(m.Body):
			b = append(b, `,"data":`...)
			b = append(b, m.Body...)
		case (strings.HasPrefix(mt, "text/") || isJSONType(mt) || strings.HasSuffix(mt, "xml")) && utf8.Valid(m.Body):
			b = append(b, `,"data":`...)
			b = appendJSONString(b, string(m.Body))
		default:
			b = append(b, `,"data_base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, m.Body)
			b = append(b, '"')
		}
	}
	return append(b, '}')
}

func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	return mt
}

func isJSONType(mt string) bool {
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// validExtName reports whether name is a CloudEvents attribute name:
// lower-case letters and digits, at most 20 characters.
func validExtName(name string) bool {
	if name == "" || len(name) > 20 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func appendJSONValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return appendJSONString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case []byte:
		return appendJSONString(b, base64.StdEncoding.EncodeToString(x))
	case time.Time:
		return appendJSONString(b, x.UTC().Format(time.RFC3339Nano))
	case float32, float64:
		data, err := json.Marshal(x)
		if err != nil {
			return append(b, "null"...)
		}
		return append(b, data...)
	}
	if n, ok := route.Int(v); ok {
		return strconv.AppendInt(b, n, 10)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, data...)
}

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
