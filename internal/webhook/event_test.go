package webhook

import (
	"encoding/json"
	"testing"
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

func TestDeliveryLogRing(t *testing.T) {
	t.Parallel()
	l := newDeliveryLog(3)
	require.Empty(t, l.list())
	for i := 1; i <= 5; i++ {
		l.add(Attempt{Attempt: i})
		got := l.list()
		require.Len(t, got, min(i, 3))
		require.Equal(t, i, got[0].Attempt, "newest first")
		require.Equal(t, max(1, i-2), got[len(got)-1].Attempt)
	}
}
