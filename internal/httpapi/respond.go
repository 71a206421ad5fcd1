package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/errs"
)

// RabbitMQ's body for a missing object.
const (
	errNotFoundTitle  = "Object Not Found"
	errNotFoundReason = "Not Found"
)

// errNotFound is what handlers return for a missing object they looked up
// themselves; it is written as RabbitMQ's {"error":"Object Not Found",...}.
var errNotFound = errs.New(errs.NotFound, errNotFoundReason)

// maxNameBytes is AMQP's short-string limit, which RabbitMQ applies to the
// names of vhosts, exchanges, queues and users.
const maxNameBytes = 255

// errorBody is the one error envelope of the face.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// WriteJSON writes v as JSON with status code; other HTTP faces use it.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// Every value written is built from plain types; this is a bug.
		writeErrorBody(w, http.StatusInternalServerError, errs.Internal.String(), "encoding response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func writeErrorBody(w http.ResponseWriter, code int, title, reason string) {
	data, _ := json.Marshal(errorBody{Error: title, Reason: reason})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// WriteError writes err as the face's JSON envelope {"error","reason"} with
// the catalog's HTTP status, and a Basic challenge on 401; other HTTP faces
// use it.
func WriteError(w http.ResponseWriter, err error) {
	if errs.KindOf(err) == errs.Unauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="Herald"`)
	}
	WriteErrorNoChallenge(w, err)
}

// WriteErrorNoChallenge is WriteError without the Basic challenge, for
// endpoints that do not take Basic credentials (a browser would prompt for a
// password).
func WriteErrorNoChallenge(w http.ResponseWriter, err error) {
	kind := errs.KindOf(err)
	writeErrorBody(w, kind.HTTPStatus(), kind.String(), errs.Message(err))
}

// writeError maps err through the error catalog and writes the envelope.
// Server-side failures (5xx) are logged; their reason is the client-safe
// message only.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	kind := errs.KindOf(err)
	code := kind.HTTPStatus()
	title := kind.String()
	reason := errs.Message(err)
	switch kind {
	case errs.NotFound:
		title = errNotFoundTitle
	case errs.Unauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="Herald Management"`)
	}
	if code >= 500 {
		level := slog.LevelError
		if code == http.StatusServiceUnavailable || code == http.StatusNotImplemented {
			level = slog.LevelWarn
		}
		a.log.LogAttrs(r.Context(), level, "management request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", code), slog.Any("error", err))
	}
	writeErrorBody(w, code, title, reason)
}

// writeCreated answers a PUT: 201 when it created the object, 204 when the
// object already existed (RabbitMQ's convention).
func writeCreated(w http.ResponseWriter, created bool) {
	if created {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeBody reads a JSON object of at most MaxBodyBytes into dst. An empty
// body leaves dst untouched (RabbitMQ treats it as {}). Numbers inside
// interface values decode as json.Number so integers stay exact.
func (a *API) decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(a.cfg.MaxBodyBytes)))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return errs.New(errs.TooLarge, "request body larger than %d bytes", mbe.Limit)
		}
		return errs.Wrap(errs.BadArgument, err, "reading request body")
	}
	return decodeJSON(data, dst)
}

// decodeJSON decodes one JSON value from data into dst; empty data is a no-op.
func decodeJSON(data []byte, dst any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return errs.New(errs.BadArgument, "bad JSON body: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errs.New(errs.BadArgument, "bad JSON body: data after the top-level value")
	}
	return nil
}

// jsonErrorText describes a decoding error without echoing large inputs.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "a " + te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.Bool:
			want = "a boolean"
		case reflect.String:
			want = "a string"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "an integer in range"
		case reflect.Map, reflect.Struct:
			want = "an object"
		case reflect.Slice, reflect.Array:
			want = "an array"
		}
		if te.Field != "" {
			return "field " + strconv.Quote(te.Field) + " must be " + want + ", not " + te.Value
		}
		return "expected " + want + ", not " + te.Value
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

// optBool is a JSON boolean that remembers whether it was present and also
// accepts the strings "true" and "false" (as RabbitMQ's parse_bool does).
type optBool struct {
	set, v bool
}

func (b *optBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true", `"true"`:
		*b = optBool{set: true, v: true}
	case "false", `"false"`:
		*b = optBool{set: true, v: false}
	case "null":
		*b = optBool{}
	default:
		return errs.New(errs.BadArgument, "expected a boolean, not %s", truncateForError(string(data)))
	}
	return nil
}

// or returns the value, or def when absent.
func (b optBool) or(def bool) bool {
	if b.set {
		return b.v
	}
	return def
}

// checkName validates a vhost, exchange, queue or user name taken from a path.
func checkName(kind, name string) error {
	switch {
	case name == "":
		return errs.New(errs.BadArgument, "%s name must not be empty", kind)
	case len(name) > maxNameBytes:
		return errs.New(errs.BadArgument, "%s name is %d bytes, longer than %d", kind, len(name), maxNameBytes)
	case !utf8.ValidString(name):
		return errs.New(errs.BadArgument, "%s name is not valid UTF-8", kind)
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return errs.New(errs.BadArgument, "%s name contains a control character", kind)
		}
	}
	return nil
}

func truncateForError(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// queryBool reports whether the query parameter is "true" (RabbitMQ compares
// the exact string).
func queryBool(r *http.Request, name string) bool { return r.URL.Query().Get(name) == "true" }
