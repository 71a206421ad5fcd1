package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	// Buckets tile the int64 range: each starts where the previous ends.
	next := int64(0)
	for i := range numBuckets {
		lo, w := bucketRange(i)
		require.Equal(t, next, lo, "bucket %d", i)
		require.Equal(t, i, bucketOf(lo))
		require.Equal(t, i, bucketOf(lo+w-1))
		if i >= subCount {
			require.LessOrEqual(t, float64(w)/float64(lo), 1.0/subHalf+1e-12, "relative width of bucket %d", i)
		}
		next = lo + w
	}
	require.Equal(t, numBuckets-1, bucketOf(math.MaxInt64))
}

func TestHistogramExactSmallValues(t *testing.T) {
	t.Parallel()
	var h Histogram
	require.Zero(t, h.Quantile(0.5))
	for v := int64(1); v <= 100; v++ {
		h.Record(v)
	}
	require.EqualValues(t, 100, h.Count())
	require.EqualValues(t, 1, h.Min())
	require.EqualValues(t, 100, h.Max())
	require.InDelta(t, 50.5, h.Mean(), 1e-9)
	require.EqualValues(t, 50, h.Quantile(0.5))
	require.EqualValues(t, 99, h.Quantile(0.99))
	require.EqualValues(t, 100, h.Quantile(1))
	require.EqualValues(t, 1, h.Quantile(0))
	h.Record(-5)
	require.EqualValues(t, 0, h.Min(), "negative values count as zero")
}

// TestHistogramQuantilesAccuracy compares quantiles with the exact ones over
// values spread across many orders of magnitude.
func TestHistogramQuantilesAccuracy(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	var h Histogram
	vals := make([]int64, 100_000)
	for i := range vals {
		vals[i] = int64(math.Exp(r.Float64() * 25)) // 1 ns .. ~72 s
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.75, 0.95, 0.99, 0.999} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		require.InDelta(t, float64(exact), float64(got), float64(exact)/subCount+1, "q=%v", q)
	}
	require.Equal(t, vals[len(vals)-1], h.Max())
	require.Equal(t, vals[0], h.Min())
}

func TestHistogramMergeReset(t *testing.T) {
	t.Parallel()
	var a, b, all Histogram
	for v := int64(0); v < 10_000; v += 3 {
		a.Record(v * 1000)
		all.Record(v * 1000)
	}
	for v := int64(1); v < 20_000; v += 7 {
		b.Record(v * 999)
		all.Record(v * 999)
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	require.Equal(t, all.Count(), m.Count())
	require.Equal(t, all.Min(), m.Min())
	require.Equal(t, all.Max(), m.Max())
	for _, q := range []float64{0.5, 0.9, 0.99} {
		require.Equal(t, all.Quantile(q), m.Quantile(q))
	}
	m.Reset()
	require.Zero(t, m.Count())
	require.Zero(t, m.Quantile(0.99))
}
