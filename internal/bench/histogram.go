package bench

import (
	"math"
	"math/bits"
)

// Histogram counts non-negative values (nanoseconds here) in log-linear
// buckets, in the manner of an HDR histogram: values below 128 are exact;
// above, each power of two is split into 64 buckets, so a reported quantile
// is within 1/128 (under 0.8%) of a value that was recorded. It costs a fixed
// 29 KiB and Record is a few instructions. The zero value is empty and ready;
// a Histogram is not safe for concurrent use.
type Histogram struct {
	counts   [numBuckets]uint64
	n        uint64
	min, max int64
	sum      float64
}

const (
	subBits    = 7
	subCount   = 1 << subBits // exact values below this
	subHalf    = subCount / 2 // buckets per power of two above it
	numBuckets = subCount + (63-subBits)*subHalf
)

// bucketOf returns the bucket index of v >= 0.
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits // >= 1
	m := int(v >> e)                     // in [subHalf, subCount)
	return subCount + (e-1)*subHalf + (m - subHalf)
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (lo, width int64) {
	if i < subCount {
		return int64(i), 1
	}
	j := i - subCount
	e := j/subHalf + 1
	m := int64(j%subHalf + subHalf)
	return m << e, 1 << e
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(v int64) {
	v = max(v, 0)
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest recorded value (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max returns the largest recorded value (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Mean returns the mean of the recorded values (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// recorded values fall: the middle of the bucket holding the value of rank
// ceil(q*n), kept within [Min, Max]. Quantile(1) is Max exactly; an empty
// histogram returns 0.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := bucketRange(i)
			return min(max(lo+(w-1)/2, h.min), h.max)
		}
	}
	return h.max
}
