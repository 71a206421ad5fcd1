package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

var discard = slog.New(slog.DiscardHandler)

// unstartedAPI is an API over a broker that was never started: enough for
// everything answered before the broker is consulted.
func unstartedAPI(t *testing.T, cfg Config) *API {
	t.Helper()
	eng, err := engine.New(engine.Config{DataDir: t.TempDir(), Logger: discard})
	require.NoError(t, err)
	br, err := broker.New(broker.Config{Engine: eng, Logger: discard})
	require.NoError(t, err)
	cfg.Broker, cfg.Logger = br, discard
	return New(cfg)
}

func decodeError(t *testing.T, body io.Reader) errorBody {
	t.Helper()
	var e errorBody
	require.NoError(t, json.NewDecoder(body).Decode(&e))
	return e
}

func TestGuestRefusedFromRemote(t *testing.T) {
	t.Parallel()
	api := unstartedAPI(t, Config{})

	req := httptest.NewRequest(http.MethodGet, "/api/overview", nil)
	req.RemoteAddr = "192.0.2.7:41234"
	req.SetBasicAuth("guest", "guest")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)

	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), "Basic")
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	e := decodeError(t, rec.Body)
	require.Equal(t, "not_authorised", e.Error)
	require.Contains(t, e.Reason, "localhost")
}

func TestMissingCredentials(t *testing.T) {
	t.Parallel()
	api := unstartedAPI(t, Config{})
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/queues", nil))
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), `realm=`)
	require.Equal(t, "not_authorised", decodeError(t, rec.Body).Error)
}

func TestUnknownPathAndMethod(t *testing.T) {
	t.Parallel()
	api := unstartedAPI(t, Config{})

	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/no-such-thing", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Equal(t, errorBody{Error: "Object Not Found", Reason: "Not Found"}, decodeError(t, rec.Body))

	rec = httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/api/overview", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	require.Contains(t, rec.Header().Get("Allow"), http.MethodGet)
	require.Equal(t, "method_not_allowed", decodeError(t, rec.Body).Error)
}

func TestMount(t *testing.T) {
	t.Parallel()
	api := unstartedAPI(t, Config{})
	mux := http.NewServeMux()
	api.Mount(mux)
	mux.HandleFunc("GET /other", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })

	for _, path := range []string{"/api/overview", "/api/queues/%2F/q", "/api/vhosts/%2F"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusUnauthorized, rec.Code, "%s reaches the API", path)
	}

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/other", nil))
	require.Equal(t, http.StatusTeapot, rec.Code)
}

// TestEncodedSlashRouting checks that "%2F" (the vhost "/") routes like any
// other segment and that path values come back decoded, working around
// ServeMux taking a lone "%2F" segment for a trailing slash.
func TestEncodedSlashRouting(t *testing.T) {
	t.Parallel()
	api := unstartedAPI(t, Config{})
	var got []string
	api.mux.HandleFunc("GET /test/{vhost}/{name}", func(w http.ResponseWriter, r *http.Request) {
		restoreSlashSegments(r)
		got = []string{r.PathValue("vhost"), r.PathValue("name")}
	})
	for path, want := range map[string][]string{
		"/test/%2F/q":          {"/", "q"},
		"/test/%2f/a%2Fb%20c":  {"/", "a/b c"},
		"/test/a%2Fb/%2F":      {"a/b", "/"},
		"/test/plain/a+b":      {"plain", "a+b"},
		"/test/%2F%2F/%252F":   {"//", "%2F"},
		"/test/%00%2F/literal": {"/", "literal"}, // the sentinel itself: also "/"
	} {
		got = nil
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusOK, rec.Code, path)
		require.Equal(t, want, got, path)
	}

	// Real routes: a match reaches authentication (401), a miss is 404.
	for _, path := range []string{"/api/queues/%2F", "/api/queues/%2F/q", "/api/vhosts/%2F",
		"/api/bindings/%2F/e/amq.direct/q/q/~", "/api/exchanges/%2F/amq.default/publish"} {
		method := http.MethodGet
		if strings.HasSuffix(path, "/publish") {
			method = http.MethodPost
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		require.Equal(t, http.StatusUnauthorized, rec.Code, path)
	}
}

// TestTrailingSlash checks that a path with one trailing slash routes like
// the path without it, as RabbitMQ's management API (cowboy) does; clients
// such as amqp091-go's test utilities call "/api/connections/".
func TestTrailingSlash(t *testing.T) {
	t.Parallel()
	api := unstartedAPI(t, Config{})
	for _, path := range []string{"/api/connections/", "/api/queues/", "/api/queues/%2F/", "/api/queues/%2F/q/", "/api/overview/"} {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusUnauthorized, rec.Code, "%s reaches the API", path)
	}
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/no-such-thing/", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:5555":        true,
		"127.1.2.3:1":           true,
		"[::1]:80":              true,
		"[::ffff:127.0.0.1]:80": true,
		"192.0.2.1:1234":        false,
		"[2001:db8::1]:80":      false,
		"":                      false,
		"@":                     false,
		"localhost:80":          false, // never resolve names
	} {
		require.Equal(t, want, isLoopback(addr), addr)
	}
}

func TestPropertiesKey(t *testing.T) {
	t.Parallel()
	require.Equal(t, "~", propertiesKey("", nil))
	require.Equal(t, "a.b", propertiesKey("a.b", nil))
	require.Equal(t, "a+b%2Fc%7Ed", propertiesKey("a b/c~d", broker.Table{}))

	withArgs := propertiesKey("k", broker.Table{"x-match": "all", "n": int64(1)})
	prefix, hash, ok := strings.Cut(withArgs, "~")
	require.True(t, ok)
	require.Equal(t, "k", prefix)
	require.Len(t, hash, 22)
	require.Equal(t, withArgs, propertiesKey("k", broker.Table{"n": int64(1), "x-match": "all"}), "stable across map order")
	require.NotEqual(t, withArgs, propertiesKey("k", broker.Table{"x-match": "any", "n": int64(1)}))
	emptyKeyArgs := propertiesKey("", broker.Table{"a": "b"})
	require.True(t, strings.HasPrefix(emptyKeyArgs, "~"))

	// Exactly one literal "~" ever, so the key splits unambiguously.
	require.Equal(t, 1, strings.Count(propertiesKey("~~~", broker.Table{"a": "b"}), "~"))

	// A client that escapes the key once more gets it back verbatim; one
	// that pastes it raw gets it percent-decoded.
	key := propertiesKey("a b/c", nil)
	require.True(t, matchesPropertiesKey(key, key))
	raw, err := url.PathUnescape(key)
	require.NoError(t, err)
	require.True(t, matchesPropertiesKey(raw, key))
	require.False(t, matchesPropertiesKey("other", key))
}

func TestTableConversion(t *testing.T) {
	t.Parallel()
	var in map[string]any
	require.NoError(t, decodeJSON([]byte(`{"x-max-length": 10, "ttl": 1.5, "s": "v", "b": true, "n": null,
		"nested": {"k": [1, "two", {"three": 3}]}, "big": 9007199254740993}`), &in))
	tbl, err := tableFromJSON(in)
	require.NoError(t, err)
	require.Equal(t, broker.Table{
		"x-max-length": int64(10), "ttl": 1.5, "s": "v", "b": true, "n": nil,
		"nested": broker.Table{"k": []any{int64(1), "two", broker.Table{"three": int64(3)}}},
		"big":    int64(9007199254740993),
	}, tbl)

	out := tableToJSON(broker.Table{
		"bytes": []byte("raw"), "ts": time.Unix(1700000000, 0), "dec": broker.Decimal{Scale: 2, Value: 1234},
		"nested": broker.Table{"f": float32(0.5)},
	})
	require.Equal(t, map[string]any{
		"bytes": "raw", "ts": int64(1700000000), "dec": 12.34, "nested": map[string]any{"f": 0.5},
	}, out)
	require.NotNil(t, tableToJSON(nil), "arguments always render as an object")

	deep := map[string]any{}
	cur := deep
	for range maxTableDepth + 2 {
		next := map[string]any{}
		cur["d"] = next
		cur = next
	}
	_, err = tableFromJSON(deep)
	require.True(t, errs.Is(err, errs.BadArgument))
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	var q queueBody
	require.NoError(t, decodeJSON(nil, &q), "empty body is {}")
	require.NoError(t, decodeJSON([]byte(`{"durable":"true","auto_delete":false,"unknown":1}`), &q))
	require.Equal(t, true, q.Durable.or(false))
	require.Equal(t, false, q.AutoDelete.or(true))
	require.Equal(t, true, q.Exclusive.or(true), "absent takes the default")

	for _, bad := range []string{`{`, `{"durable":"yes"}`, `{"arguments":[]}`, `{} {}`, `[1]`, `{"durable":1}`} {
		err := decodeJSON([]byte(bad), &queueBody{})
		require.Error(t, err, bad)
		require.Equal(t, errs.BadArgument, errs.KindOf(err), bad)
		require.Equal(t, http.StatusBadRequest, errs.KindOf(err).HTTPStatus())
	}
}

func TestPublishBodyValidation(t *testing.T) {
	t.Parallel()
	decode := func(s string) (*broker.Message, error) {
		var b publishBody
		if err := decodeJSON([]byte(s), &b); err != nil {
			return nil, err
		}
		return b.message()
	}
	m, err := decode(`{"routing_key":"k","payload":"aGk=","payload_encoding":"base64",
		"properties":{"delivery_mode":2,"headers":{"h":1},"timestamp":1700000000,"content_type":"text/plain","bogus":1}}`)
	require.NoError(t, err)
	require.Equal(t, []byte("hi"), m.Body)
	require.Equal(t, uint8(2), m.Properties.DeliveryMode)
	require.Equal(t, broker.Table{"h": int64(1)}, m.Properties.Headers)
	require.Equal(t, int64(1700000000), m.Properties.Timestamp.Unix())
	require.Equal(t, "text/plain", m.Properties.ContentType)

	for _, bad := range []string{
		`{"payload":"x"}`,     // no routing key
		`{"routing_key":"k"}`, // no payload
		`{"routing_key":"k","payload":"%%","payload_encoding":"base64"}`,
		`{"routing_key":"k","payload":"x","payload_encoding":"hex"}`,
		`{"routing_key":"k","payload":"x","properties":{"delivery_mode":3}}`,
		`{"routing_key":"k","payload":"x","properties":{"delivery_mode":300}}`,
		`{"routing_key":"k","payload":"x","properties":{"priority":"high"}}`,
		`{"routing_key":"` + strings.Repeat("r", 256) + `","payload":"x"}`,
	} {
		_, err := decode(bad)
		require.Error(t, err, bad)
		require.Equal(t, errs.BadArgument, errs.KindOf(err), bad)
	}
}

func TestGetBodyValidation(t *testing.T) {
	t.Parallel()
	parse := func(s string) (getBody, int, error) {
		var g getBody
		if err := decodeJSON([]byte(s), &g); err != nil {
			return g, 0, err
		}
		n, err := g.validate(100)
		return g, n, err
	}
	g, n, err := parse(`{"ackmode":"ack_requeue_true"}`)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, encodingAuto, g.Encoding)

	g, _, err = parse(`{"count":5,"requeue":false,"encoding":"base64","truncate":10}`)
	require.NoError(t, err)
	require.Equal(t, ackRequeueFalse, g.AckMode)

	for _, bad := range []string{
		`{"count":1}`,
		`{"count":1,"ackmode":"nope"}`,
		`{"count":-1,"ackmode":"ack_requeue_true"}`,
		`{"count":101,"ackmode":"ack_requeue_true"}`,
		`{"count":"1","ackmode":"ack_requeue_true"}`,
		`{"count":1,"ackmode":"ack_requeue_true","encoding":"hex"}`,
		`{"count":1,"ackmode":"ack_requeue_true","truncate":-1}`,
	} {
		_, _, err := parse(bad)
		require.Error(t, err, bad)
		require.Equal(t, errs.BadArgument, errs.KindOf(err), bad)
	}
}

func TestGotViewEncoding(t *testing.T) {
	t.Parallel()
	d := &broker.Delivery{Message: &broker.Message{Body: []byte("hello world")}, RoutingKey: "k"}
	v := gotView(d, encodingAuto, nil)
	require.Equal(t, "hello world", v.Payload)
	require.Equal(t, encodingString, v.PayloadEncoding)
	require.Equal(t, 11, v.PayloadBytes)

	five := 5
	v = gotView(d, encodingAuto, &five)
	require.Equal(t, "hello", v.Payload)
	require.Equal(t, 11, v.PayloadBytes)

	v = gotView(d, encodingBase64, nil)
	require.Equal(t, "aGVsbG8gd29ybGQ=", v.Payload)
	require.Equal(t, encodingBase64, v.PayloadEncoding)

	d.Message.Body = []byte{0xff, 0xfe}
	v = gotView(d, encodingAuto, nil)
	require.Equal(t, encodingBase64, v.PayloadEncoding)
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	tags, err := parseTags("administrator, management,,administrator")
	require.NoError(t, err)
	require.Equal(t, []string{"administrator", "management"}, tags)
	tags, err = parseTags([]any{"monitoring"})
	require.NoError(t, err)
	require.Equal(t, []string{"monitoring"}, tags)
	tags, err = parseTags(nil)
	require.NoError(t, err)
	require.Equal(t, []string{}, tags)
	_, err = parseTags(json.Number("1"))
	require.Error(t, err)
	_, err = parseTags([]any{json.Number("1")})
	require.Error(t, err)
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	require.NoError(t, checkName("queue", "orders.v1 / é"))
	for _, bad := range []string{"", strings.Repeat("n", 256), "a\x00b", "tab\there", string([]byte{0xff})} {
		err := checkName("queue", bad)
		require.Error(t, err, "%q", bad)
		require.Equal(t, errs.BadArgument, errs.KindOf(err))
	}
}

func TestPrincipalLevels(t *testing.T) {
	t.Parallel()
	admin := newPrincipal(broker.User{Name: "a", Tags: []string{"administrator"}})
	require.NoError(t, admin.require(levelAdmin))
	mon := newPrincipal(broker.User{Name: "m", Tags: []string{"monitoring"}})
	require.NoError(t, mon.require(levelManagement))
	require.True(t, mon.monitor)
	require.Equal(t, errs.AccessRefused, errs.KindOf(mon.require(levelAdmin)))
	none := newPrincipal(broker.User{Name: "n"})
	require.Equal(t, errs.AccessRefused, errs.KindOf(none.require(levelManagement)))
}
