package broker_test

import (
	"fmt"
	"testing"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/stretchr/testify/require"
)

// TestAckFloorKeepsWhatIsStillNeeded: acknowledgements purge the queue's
// messages below its floor in one go (held.go). Messages delivered and not
// acknowledged, requeued, or still ready — interleaved with those of another
// queue in the same log — survive, across a restart.
func TestAckFloorKeepsWhatIsStillNeeded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, eng := start(t, dir, nil)
	declareQ(t, b, "f1", nil)
	declareQ(t, b, "f2", nil)
	for i := range 40 {
		pub(t, b, "", fmt.Sprintf("f%d", i%2+1), fmt.Sprint(i), broker.Properties{DeliveryMode: 2})
	}
	// f1 holds 0,2,...,38. Take ten, keep "4" unacked and requeue "10",
	// ack the rest, out of order.
	var ds []*broker.Delivery
	for range 10 {
		ds = append(ds, get(t, b, "f1", false))
	}
	for i := len(ds) - 1; i >= 0; i-- {
		switch string(ds[i].Message.Body) {
		case "4":
		case "10":
			require.NoError(t, ds[i].Nack(true))
		default:
			require.NoError(t, ds[i].Ack())
		}
	}
	// f2 acks its first five in order.
	for range 5 {
		require.NoError(t, get(t, b, "f2", false).Ack())
	}
	stop(b, eng) // "4" is unacked at shutdown: it comes back

	b, eng = start(t, dir, nil)
	defer stop(b, eng)
	var f1, f2 []string
	for range 12 {
		f1 = append(f1, string(get(t, b, "f1", true).Message.Body))
	}
	requireEmpty(t, b, "f1")
	for range 15 {
		f2 = append(f2, string(get(t, b, "f2", true).Message.Body))
	}
	requireEmpty(t, b, "f2")
	require.Equal(t, []string{"4", "10", "20", "22", "24", "26", "28", "30", "32", "34", "36", "38"}, f1)
	require.Equal(t, []string{"11", "13", "15", "17", "19", "21", "23", "25", "27", "29", "31", "33", "35", "37", "39"}, f2)
}
