package route

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDirect(t *testing.T) {
	t.Parallel()
	d := NewDirect()
	require.True(t, d.Add("k", q("q1")))
	require.False(t, d.Add("k", q("q1")))
	require.True(t, d.Add("k", q("q2")))
	require.True(t, d.Add("", q("q3")))
	require.True(t, d.Add("k", Dest{Name: "q1", IsExchange: true}))
	require.Equal(t, 4, d.Len())
	require.Equal(t, []string{"q1", "q2", "x:q1"}, names(d.Match("k", nil)))
	require.Equal(t, []string{"q3"}, names(d.Match("", nil)))
	require.Empty(t, d.Match("K", nil))
	require.Empty(t, d.Match("*", nil), "no wildcards on a direct exchange")
	require.True(t, d.Remove("k", q("q1")))
	require.False(t, d.Remove("k", q("q1")))
	require.False(t, d.Remove("nope", q("q1")))
	require.Equal(t, []string{"q2", "x:q1"}, names(d.Match("k", nil)))
	require.True(t, d.Remove("k", q("q2")))
	require.True(t, d.Remove("k", Dest{Name: "q1", IsExchange: true}))
	require.True(t, d.Remove("", q("q3")))
	require.Zero(t, d.Len())
	require.Empty(t, d.keys)
}

func TestFanout(t *testing.T) {
	t.Parallel()
	f := NewFanout()
	require.Empty(t, f.Match(nil))
	for i := range 50 { // past smallSet: the indexed set
		require.True(t, f.Add(q(fmt.Sprint(i))))
		require.False(t, f.Add(q(fmt.Sprint(i))))
	}
	require.Equal(t, 50, f.Len())
	require.Len(t, f.Match(nil), 50)
	for i := 0; i < 50; i += 2 {
		require.True(t, f.Remove(q(fmt.Sprint(i))))
		require.False(t, f.Remove(q(fmt.Sprint(i))))
	}
	got := f.Match(nil)
	require.Len(t, got, 25)
	for _, d := range got {
		var n int
		fmt.Sscan(d.Name, &n)
		require.Equal(t, 1, n%2)
	}
	for i := 1; i < 50; i += 2 {
		require.True(t, f.Remove(q(fmt.Sprint(i))))
	}
	require.Zero(t, f.Len())
	require.Nil(t, f.set.idx)
}

// TestDestSetIndex checks that the indexed set stays consistent with its
// list through swaps on removal.
func TestDestSetIndex(t *testing.T) {
	t.Parallel()
	var s destSet
	for i := range 40 {
		s.add(q(fmt.Sprint(i)), uint32(i))
	}
	for _, i := range []int{0, 39, 17, 5, 22, 23, 1} {
		require.True(t, s.remove(q(fmt.Sprint(i))))
		for j, d := range s.list {
			require.Equal(t, j, s.find(d))
		}
		if s.idx != nil {
			require.Len(t, s.idx, len(s.list))
		}
	}
	require.Equal(t, -1, s.find(q("17")))
}
