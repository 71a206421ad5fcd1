package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group commit. With Fsync "always" on a standalone server, JetStream runs
// without syncs of its own on the write path (it writes each message to its
// block file before acknowledging it, and syncs every SyncInterval), and the
// syncer makes appends durable before they are acknowledged to the caller:
//
//   - an acknowledged append marks its log dirty and waits for the next sync
//     round (its generation); AppendAsync's done, Append and the KV writes
//     return only once that round is over;
//   - a round takes the dirty logs and, for each, fdatasyncs the files that
//     changed since the last round (the block files, the stream's config
//     files) and then the directories whose entries changed; appends that
//     arrive while a round runs wait for the next one. So a lone append waits
//     for one fsync, and a busy log shares each fsync among every append
//     that arrived during the previous one — the classic group commit.
//
// Shadows. JetStream also rewrites files in place of old ones: a block is
// compacted into a temporary file renamed over it (the acknowledged messages
// it still holds move to the new file), and config files are replaced the
// same way, without a sync in this mode. A power cut after the rename and
// before the new file's data reached the disk would lose messages already
// confirmed. So each round keeps, for every file it synced, a hard link to
// the synced inode under <DataDir>/herald-shadow/<log>/ (replaced by the
// next synced version). At start, before JetStream opens its files, a file
// whose inode is not its shadow's (it was replaced after the last round) is
// put back from the shadow, and the log's state file is removed so JetStream
// rebuilds its index from the blocks. What that undoes was never confirmed
// (a confirmed change was synced and shadowed by a round); deletes undone
// make acknowledged messages come back, which at-least-once allows.
//
// Memory logs are never synced; a log is a file log when its directory
// exists. Clusters (the Raft log is synced on flush and replicated) and
// ExternalURL do not use the syncer.
type syncer struct {
	r       *run
	streams string // <DataDir>/jetstream/$G/streams
	shadows string // <DataDir>/herald-shadow

	mu      sync.Mutex
	dirty   map[string]struct{}
	full    map[string]bool // logs whose next round looks at every file
	started uint64          // rounds started; an append marked now needs started+1
	file    map[string]bool
	failed  map[uint64]error // rounds that failed (bounded: maxFailedRounds)
	closed  bool

	done atomic.Uint64 // rounds finished

	kick    chan struct{} // cap 1
	quit    chan struct{}
	stopped chan struct{}
	cond    *sync.Cond // broadcast after each round, for wait

	logs map[string]*syncedLog // worker only

	rounds, fsyncs, appends atomic.Uint64 // rounds run, fsyncs done, writes marked
}

// syncedLog is what the last rounds synced of one log.
type syncedLog struct {
	files    map[string]fileID // relative path → synced inode and size
	lastFull time.Time         // last scan of every file
	dirReady bool              // the log's directories were synced once
	newest   uint64            // the highest block index seen
	fd       *os.File          // the newest block, kept open between rounds
	fdName   string
	fdIno    uint64
}

func (sl *syncedLog) closeFD() {
	if sl.fd != nil {
		_ = sl.fd.Close()
		sl.fd, sl.fdName, sl.fdIno = nil, "", 0
	}
}

type fileID struct {
	ino  uint64
	size int64
}

const (
	shadowDir       = "herald-shadow"
	streamStateFile = "index.db"
	maxFailedRounds = 1024
	// fullScanEvery bounds how often a round looks at every file of a log;
	// the others look at the newest block and those created after it. Older
	// blocks and the config files change only when JetStream replaces them,
	// and until the new version is synced the shadow holds the old one, so
	// noticing late costs disk space, not safety (EnsureLog asks for a full
	// round).
	fullScanEvery = 200 * time.Millisecond
	// shadowCheckEvery is how often every log seen gets a full round.
	shadowCheckEvery = time.Second
)

var errSyncClosed = errors.New("engine: stopped before the write was synced")

func newSyncer(r *run, dataDir string) *syncer {
	s := &syncer{
		r:       r,
		streams: filepath.Join(dataDir, "jetstream", "$G", "streams"),
		shadows: filepath.Join(dataDir, shadowDir),
		dirty:   make(map[string]struct{}),
		full:    make(map[string]bool),
		file:    make(map[string]bool),
		failed:  make(map[uint64]error),
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		logs:    make(map[string]*syncedLog),
	}
	s.cond = sync.NewCond(&s.mu)
	go s.work()
	return s
}

// isFileLocked reports whether log is stored in files. Caller holds mu.
func (s *syncer) isFileLocked(log string) bool {
	f, ok := s.file[log]
	if !ok {
		_, err := os.Stat(filepath.Join(s.streams, log, "msgs"))
		f = err == nil
		s.file[log] = f
	}
	return f
}

// setLog records whether log is a file log (EnsureLog knows).
func (s *syncer) setLog(log string, file bool) {
	s.mu.Lock()
	s.file[log] = file
	s.mu.Unlock()
}

// forget drops log (deleted) and its shadows.
func (s *syncer) forget(log string) {
	s.mu.Lock()
	delete(s.file, log)
	delete(s.dirty, log)
	s.mu.Unlock()
	s.kickWorker()
	_ = os.RemoveAll(filepath.Join(s.shadows, log))
}

// mark records a write to log and returns the round generation that makes
// it durable, or 0 when none is needed (a memory log).
func (s *syncer) mark(log string) uint64 { return s.markAll(log, false, true) }

// touch adds log to the next round without starting one (deletes): it
// runs with the next write's round or the next tick, so deletes never make
// an append wait behind an fsync of their own.
func (s *syncer) touch(log string) {
	s.mu.Lock()
	if log != "" && s.isFileLocked(log) {
		s.dirty[log] = struct{}{}
	}
	s.mu.Unlock()
}

// markAll is mark; with full the round looks at every file of the log (its
// config files, every block), not only the newest blocks; write counts it
// in SyncedAppends.
func (s *syncer) markAll(log string, full, write bool) uint64 {
	s.mu.Lock()
	if log == "" || !s.isFileLocked(log) {
		s.mu.Unlock()
		return 0
	}
	s.dirty[log] = struct{}{}
	if full {
		s.full[log] = true
	}
	if write {
		s.appends.Add(1)
	}
	gen := s.started + 1
	s.mu.Unlock()
	s.kickWorker()
	return gen
}

func (s *syncer) kickWorker() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// result reports whether round gen is over and, if so, its error.
func (s *syncer) result(gen uint64) (bool, error) {
	if gen > s.done.Load() {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return true, s.failed[gen]
}

// wait marks log and blocks until the round that makes the write durable
// is over, or ctx ends; with full that round looks at every file of the log
// (a log created or reconfigured).
func (s *syncer) wait(ctx context.Context, log string, full bool) error {
	gen := s.markAll(log, full, true)
	if gen == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.done.Load() < gen {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("engine: waiting for %q to be synced: %w", log, err)
		}
		if s.closed {
			return errSyncClosed
		}
		s.cond.Wait()
	}
	return s.failed[gen]
}

func (s *syncer) work() {
	defer close(s.stopped)
	t := time.NewTicker(shadowCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-s.kick:
		case <-t.C:
			// JetStream also compacts blocks on its own timer: a full
			// round of every log seen keeps their shadows current, so a
			// restart after kill -9 has little to put back.
			s.mu.Lock()
			for log := range s.logs {
				s.dirty[log] = struct{}{}
				s.full[log] = true
			}
			s.mu.Unlock()
		case <-s.quit:
			s.round() // what was marked before close
			return
		}
		s.round()
	}
}

// final runs, once JetStream has stopped, a full round of every log on
// disk, so the shadows are the files JetStream left and a clean restart
// puts nothing back. The worker must have exited (close).
func (s *syncer) final() {
	ents, err := os.ReadDir(s.streams)
	if err == nil {
		for _, ent := range ents {
			if err := s.syncLog(ent.Name(), true); err != nil {
				s.r.log.Warn("syncing log files at stop", "log", ent.Name(), "err", err)
			}
		}
	}
	for _, sl := range s.logs {
		sl.closeFD()
	}
}

// round syncs the logs marked so far.
func (s *syncer) round() {
	s.mu.Lock()
	logs := s.dirty
	if len(logs) == 0 {
		s.mu.Unlock()
		return
	}
	s.dirty = make(map[string]struct{}, len(logs))
	fulls := s.full
	if len(fulls) > 0 {
		s.full = make(map[string]bool)
	}
	s.started++
	gen := s.started
	s.mu.Unlock()

	var err error
	for log := range logs {
		if e := s.syncLog(log, fulls[log]); e != nil {
			s.r.log.Error("syncing log files failed: the appends waiting for it fail", "log", log, "err", e)
			err = fmt.Errorf("engine: syncing log %q: %w", log, e)
		}
	}
	s.rounds.Add(1)
	s.mu.Lock()
	if err != nil {
		if len(s.failed) >= maxFailedRounds {
			clear(s.failed)
		}
		s.failed[gen] = err
	}
	s.done.Store(gen)
	s.cond.Broadcast()
	s.mu.Unlock()
	if p := s.r.pub; p != nil {
		p.wake()
	}
}

// syncLog syncs what changed in one log's files and updates their shadows.
func (s *syncer) syncLog(log string, full bool) error {
	dir := filepath.Join(s.streams, log)
	sl := s.logs[log]
	if sl == nil {
		sl = &syncedLog{files: make(map[string]fileID)}
		s.logs[log] = sl
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		sl.closeFD()
		delete(s.logs, log) // deleted (or memory): nothing to sync
		return nil
	}
	full = full || sl.newest == 0 || time.Since(sl.lastFull) >= fullScanEvery
	if full {
		sl.lastFull = time.Now()
	}
	names, err := s.changedFiles(dir, sl, full)
	if err != nil {
		return err
	}
	if len(names) == 0 && sl.dirReady {
		return nil
	}
	shadow := filepath.Join(s.shadows, log)
	if err := os.MkdirAll(filepath.Join(shadow, "msgs"), 0o750); err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, name := range names {
		id, moved, err := s.syncFile(dir, shadow, name, sl)
		if err != nil {
			return err
		}
		if moved {
			dirs[filepath.Dir(name)] = true
		}
		sl.files[name] = id
	}
	if !sl.dirReady {
		// A new log: its directories' entries must reach the disk too.
		dirs["."], dirs["msgs"] = true, true
		if err := s.syncDir(s.streams); err != nil {
			return err
		}
		if err := s.syncDir(s.shadows); err != nil {
			return err
		}
	}
	for d := range dirs {
		if err := s.syncDir(filepath.Join(dir, d)); err != nil {
			return err
		}
		if err := s.syncDir(filepath.Join(shadow, d)); err != nil {
			return err
		}
	}
	sl.dirReady = true
	return nil
}

// changedFiles lists the files of a log (relative to dir) that differ from
// what was last synced: the config files, the newest blocks, and with full
// every block; files gone since are dropped from sl and their shadows
// removed.
func (s *syncer) changedFiles(dir string, sl *syncedLog, full bool) ([]string, error) {
	var out []string
	if !full {
		// The newest block and any created after it; older blocks and the
		// config files wait for a full round.
		for i := sl.newest; ; i++ {
			name := "msgs/" + strconv.FormatUint(i, 10) + ".blk"
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(dir, name), &st); err != nil {
				if i == sl.newest {
					sl.lastFull = time.Time{} // removed: look at everything next round
				}
				return out, nil
			}
			if prev := sl.files[name]; st.Ino != prev.ino || st.Size != prev.size {
				out = append(out, name)
			}
			sl.newest = i
		}
	}
	for _, name := range []string{"meta.inf", "meta.sum"} {
		if changed(filepath.Join(dir, name), sl.files[name]) {
			out = append(out, name)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "msgs"))
	if err != nil {
		return nil, err
	}
	var newest uint64
	for _, ent := range ents {
		if i, ok := blockIndex(ent.Name()); ok {
			newest = max(newest, i)
		}
	}
	sl.newest = newest
	seen := make(map[string]bool, len(ents))
	for _, ent := range ents {
		n := ent.Name()
		if _, ok := blockIndex(n); !ok {
			continue
		}
		name := "msgs/" + n
		seen[name] = true
		if changed(filepath.Join(dir, name), sl.files[name]) {
			out = append(out, name)
		}
	}
	if full {
		for name := range sl.files {
			if strings.HasPrefix(name, "msgs/") && !seen[name] {
				delete(sl.files, name)
				_ = os.Remove(filepath.Join(s.shadows, filepath.Base(dir), name))
			}
		}
	}
	return out, nil
}

// blockIndex parses "<n>.blk".
func blockIndex(name string) (uint64, bool) {
	n, ok := strings.CutSuffix(name, ".blk")
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseUint(n, 10, 32)
	return i, err == nil
}

// changed reports whether path is not the file last synced (another inode,
// or a size it had not then). A missing file has not changed.
func changed(path string, prev fileID) bool {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return false
	}
	return st.Ino != prev.ino || st.Size != prev.size
}

// syncFile fdatasyncs dir/name and, when it is another inode than the one
// last synced, links that inode as its shadow (moved reports it: the
// directories need a sync).
func (s *syncer) syncFile(dir, shadow, name string, sl *syncedLog) (id fileID, moved bool, err error) {
	path := filepath.Join(dir, name)
	var f *os.File
	if name == sl.fdName {
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err == nil && st.Ino == sl.fdIno {
			f = sl.fd
		}
	}
	if f == nil {
		f, err = os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return sl.files[name], false, nil // removed meanwhile: the next full scan drops it
		}
		if err != nil {
			return fileID{}, false, err
		}
		if b, ok := blockIndex(filepath.Base(name)); ok && b == sl.newest {
			sl.closeFD() // keep the newest block open for the next rounds
			sl.fd, sl.fdName = f, name
		} else {
			defer f.Close()
		}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fileID{}, false, err
	}
	if f == sl.fd {
		sl.fdIno = st.Ino
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fileID{}, false, err
	}
	s.fsyncs.Add(1)
	id = fileID{ino: st.Ino, size: st.Size}
	if prev, ok := sl.files[name]; ok && prev.ino == st.Ino {
		return id, false, nil
	}
	// Link the inode we synced (not the path: it may be replaced already).
	dst := filepath.Join(shadow, name)
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
		return fileID{}, false, fmt.Errorf("linking the shadow of %s: %w", name, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fileID{}, false, err
	}
	return id, true, nil
}

func (s *syncer) syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	s.fsyncs.Add(1)
	return d.Sync()
}

// close runs a last round for what is marked and stops the worker; waiters
// still blocked fail.
func (s *syncer) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	<-s.stopped
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

// restoreShadows puts back, before JetStream opens its files, every file
// replaced after the last sync round by its synced version (see syncer). It
// returns the logs it restored.
func restoreShadows(dataDir string, log func(msg string, args ...any)) ([]string, error) {
	shadows := filepath.Join(dataDir, shadowDir)
	streams := filepath.Join(dataDir, "jetstream", "$G", "streams")
	ents, err := os.ReadDir(shadows)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var restored []string
	for _, ent := range ents {
		name := ent.Name()
		sdir, ldir := filepath.Join(shadows, name), filepath.Join(streams, name)
		if _, err := os.Stat(ldir); errors.Is(err, os.ErrNotExist) {
			_ = os.RemoveAll(sdir) // the log was deleted
			continue
		}
		n, err := restoreLog(sdir, ldir)
		if err != nil {
			return restored, fmt.Errorf("engine: restoring the synced files of log %q: %w", name, err)
		}
		if n > 0 {
			log("restored files replaced after the last sync (a crash); the log's index is rebuilt from its blocks", "log", name, "files", n)
			restored = append(restored, name)
		}
	}
	return restored, nil
}

// restoreLog restores the files of one log; it returns how many.
func restoreLog(sdir, ldir string) (int, error) {
	n := 0
	for _, sub := range []string{".", "msgs"} {
		ents, err := os.ReadDir(filepath.Join(sdir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, err
		}
		for _, ent := range ents {
			if ent.IsDir() {
				continue
			}
			shadow := filepath.Join(sdir, sub, ent.Name())
			if strings.HasSuffix(ent.Name(), ".tmp") {
				_ = os.Remove(shadow)
				continue
			}
			cur := filepath.Join(ldir, sub, ent.Name())
			var ss, cs syscall.Stat_t
			if err := syscall.Lstat(shadow, &ss); err != nil {
				return n, err
			}
			if err := syscall.Lstat(cur, &cs); errors.Is(err, syscall.ENOENT) {
				if sub == "msgs" {
					// JetStream removed the block (all its messages were
					// deleted); its shadow goes too.
					_ = os.Remove(shadow)
					continue
				}
			} else if err != nil {
				return n, err
			} else if cs.Ino == ss.Ino {
				continue
			}
			tmp := cur + ".herald-restore"
			_ = os.Remove(tmp)
			if err := os.Link(shadow, tmp); err != nil {
				return n, err
			}
			if err := os.Rename(tmp, cur); err != nil {
				return n, err
			}
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := os.Remove(filepath.Join(ldir, "msgs", streamStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return n, err
	}
	for _, d := range []string{ldir, filepath.Join(ldir, "msgs")} {
		f, err := os.Open(d)
		if err != nil {
			return n, err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ackStream returns the stream named in a PubAck ({"stream":"L",...}).
func ackStream(ack []byte) string {
	const key = `"stream":"`
	i := bytes.Index(ack, []byte(key))
	if i < 0 {
		return ""
	}
	rest := ack[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

func (e *impl) stats() Stats {
	r, err := e.running()
	if err != nil || r.sync == nil {
		return Stats{}
	}
	s := r.sync
	return Stats{SyncRounds: s.rounds.Load(), Fsyncs: s.fsyncs.Load(), SyncedAppends: s.appends.Load()}
}
