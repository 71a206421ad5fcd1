package broker_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/errs"
)

func TestRecordsPersistAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, eng := start(t, dir, nil)
	require.NoError(t, b.PutRecord(bg, "webhook", "a1", []byte(`{"url":"x"}`)))
	require.NoError(t, b.PutRecord(bg, "webhook", "b2", []byte(`{"url":"y"}`)))
	require.NoError(t, b.PutRecord(bg, "webhook", "a1", []byte(`{"url":"z"}`)))
	require.NoError(t, b.DeleteRecord(bg, "webhook", "b2"))
	require.NoError(t, b.DeleteRecord(bg, "webhook", "missing"))
	require.Equal(t, map[string][]byte{"a1": []byte(`{"url":"z"}`)}, b.Records("webhook"))
	require.Empty(t, b.Records("other"))

	err := b.PutRecord(bg, "webhook", "bad.id", []byte(`{}`))
	require.True(t, errs.Is(err, errs.BadArgument), "%v", err)
	err = b.PutRecord(bg, "webhook", "ok", []byte(`not json`))
	require.True(t, errs.Is(err, errs.BadArgument), "%v", err)
	stop(b, eng)

	b, eng = start(t, dir, nil)
	defer stop(b, eng)
	require.Equal(t, map[string][]byte{"a1": []byte(`{"url":"z"}`)}, b.Records("webhook"))
}
