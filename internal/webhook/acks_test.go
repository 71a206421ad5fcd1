package webhook

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
)

func TestAckerReleasesInOrder(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, err := e.b.DeclareQueue(bg, "/", broker.QueueSpec{Name: "acks", Durable: true}, false)
	require.NoError(t, err)
	take := func(n int, a *acker) []*broker.Delivery {
		var ds []*broker.Delivery
		for range n {
			_, err := e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "", RoutingKey: "acks", Message: &broker.Message{Body: []byte("x")}})
			require.NoError(t, err)
			ds = append(ds, getMsg(t, e, "acks", false))
			a.track(ds[len(ds)-1])
		}
		return ds
	}
	unacked := func() int {
		qi, err := e.b.Queue("/", "acks")
		require.NoError(t, err)
		return qi.MessagesUnacked
	}

	a := newAcker(100)
	d := take(5, a)
	a.ack(d[1])
	a.ack(d[2])
	require.Equal(t, 5, unacked(), "acks after an unsettled head are held")
	a.ack(d[0])
	require.Equal(t, 2, unacked(), "the head releases the run")
	a.nack(d[4])
	require.Equal(t, 1, unacked(), "nacks are not held")
	a.ack(d[3])
	require.Equal(t, 0, unacked())
	a.stop()
	_, err = e.b.PurgeQueue(bg, "/", "acks", "")
	require.NoError(t, err)

	a = newAcker(2) // at most 2 held
	d = take(4, a)
	a.ack(d[1])
	require.Equal(t, 4, unacked())
	a.ack(d[2])
	require.Equal(t, 2, unacked(), "the hold limit releases out of order")
	a.ack(d[0])
	a.ack(d[3])
	require.Equal(t, 0, unacked())
	a.stop()

	a = newAcker(100)
	d = take(2, a)
	a.ack(d[1])
	eventually(t, func() bool { return unacked() == 1 }, "held ack not released after ackHold")
	a.stop()
	a.ack(d[0])
	require.Equal(t, 0, unacked(), "after stop nothing is held")
}
