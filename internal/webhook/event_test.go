package webhook

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
)

// FuzzStructuredEvent: whatever the message, the delivery body is one valid
// JSON object carrying the attributes as given.
func FuzzStructuredEvent(f *testing.F) {
	f.Add("id-1", "/src", "t.x", "application/json", "ext", "v", []byte(`{"a":1}`))
	f.Add("", "", "", "text/plain; charset=utf-8", "UPPER", "x", []byte("hi\n\"there\""))
	f.Add("\x00<&>\"\\", "\xff\xfe", "é", "", "a1", "\u2028", []byte{0xff, 0, 1})
	f.Add("i", "s", "t", "application/cloudevents+json", "data", "d", []byte(`not json`))
	f.Fuzz(func(t *testing.T, id, source, typ, ct, ext, extVal string, body []byte) {
		h := broker.Table{ceHeader + "id": id, ceHeader + "source": source, ceHeader + "type": typ, ceHeader + ext: extVal}
		m := &broker.Message{Properties: broker.Properties{ContentType: ct, Headers: h}, Body: body}
		out := structuredEvent(m, &prepared{webhookID: "msg_x", exchange: "ex", routingKey: "rk"}, "/")
		var ev map[string]any
		require.NoError(t, json.Unmarshal(out, &ev), "%q", out)
		require.Equal(t, "1.0", ev["specversion"])
		if id != "" && utf8.ValidString(id) && ext != "id" {
			require.Equal(t, id, ev["id"])
		}
		if len(body) > 0 {
			_, hasData := ev["data"]
			_, hasB64 := ev["data_base64"]
			require.True(t, hasData != hasB64, "%q", out)
		}
	})
}

func TestAttemptJSONRoundTrip(t *testing.T) {
	t.Parallel()
	a := Attempt{Time: time.Date(2026, 11, 23, 12, 0, 0, 5, time.UTC), WebhookID: "msg_1", Attempt: 2, Status: 500,
		Latency: 1500 * time.Microsecond, Response: "boom", Outcome: outcomeRetry, RetryAfter: 1500 * time.Millisecond}
	data, err := json.Marshal(a)
	require.NoError(t, err)
	require.Contains(t, string(data), `"latency_ms":1.5`)
	require.Contains(t, string(data), `"retry_after_ms":1500`)
	var back Attempt
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, a, back)

	for _, str := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f\n\r\t", "<html>&amp;", "héllo ✓ 𝄞", "\u2028"} {
		a.Response, a.Error = str, str
		data, err := json.Marshal(a)
		require.NoError(t, err)
		require.True(t, json.Valid(data), "%q", data)
		require.NoError(t, json.Unmarshal(data, &back))
		require.Equal(t, a, back, "%q", str)
	}
	a.Response = "bad\xffutf8"
	data, err = json.Marshal(a)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, "bad\ufffdutf8", back.Response)
}
