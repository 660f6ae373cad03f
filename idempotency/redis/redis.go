// Package redis is a Redis idempotency store, registered as "redis", built
// on github.com/redis/go-redis/v9.
//
// URL: redis://[:password@]host:6379/0?prefix=payrail:idem:
//
// Every parameter go-redis's ParseURL understands (dial_timeout,
// pool_size, ...) is passed to it; rediss:// selects TLS. prefix (default
// "payrail:idem:") starts every key the store writes, so several
// deployments or test runs can share one server.
//
// Each record is one hash, <prefix><merchant>:<key> (":" and "%" in the
// merchant percent-encoded), holding the fingerprint, state, lease token
// and expiry, resource id, status, headers and body. Every operation is one
// Lua script on that one key, so it is atomic and costs one round trip:
// Begin claims, replays, reports a conflict or a mismatch, or takes over a
// lapsed lease; Complete, Extend and Release act only for the lease token's
// holder. A request that executes costs two round trips, a replay one
// (scripts run by EVALSHA; after a server restart the first call of each
// script re-sends it). Records expire through Redis's own TTL (PEXPIRE), and
// the caller's clock is also checked against the stored expiry, so that a
// record past its logical expiry is never replayed.
//
// Every string is kept byte for byte (Redis is binary-safe), except the
// headers of a stored response, kept as JSON: a header name or value that
// is not valid UTF-8 is refused with driver.ErrInvalidInput.
//
// Since every script touches a single key, the store works on Redis Cluster
// too (pass a *redis.ClusterClient to New); List then scans every master.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
)

func init() {
	idempotency.Register("redis", opener{})
	idempotency.Register("rediss", opener{})
}

type opener struct{}

func (opener) Open(ctx context.Context, u *url.URL) (driver.Store, error) { return OpenURL(ctx, u) }

// DefaultPrefix starts every key unless the URL's prefix parameter or
// WithPrefix sets another.
const DefaultPrefix = "payrail:idem:"

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the key prefix (default DefaultPrefix).
func WithPrefix(p string) Option { return func(s *Store) { s.prefix = p } }

// Store is the Redis idempotency store. It implements driver.Store,
// driver.Admin and driver.Pinger.
type Store struct {
	c      goredis.UniversalClient
	own    bool
	prefix string
	closed atomic.Bool
}

// The interfaces Store implements.
var (
	_ driver.Store  = (*Store)(nil)
	_ driver.Admin  = (*Store)(nil)
	_ driver.Pinger = (*Store)(nil)
)

// Open opens the store at urlstr (see the package documentation).
func Open(ctx context.Context, urlstr string, opts ...Option) (*Store, error) {
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, errors.New("redis: malformed URL")
	}
	return OpenURL(ctx, u, opts...)
}

// OpenURL is Open with a parsed URL. It checks the server answers.
func OpenURL(ctx context.Context, u *url.URL, opts ...Option) (*Store, error) {
	o, prefix, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	client := goredis.NewClient(o)
	s := New(client, append([]Option{WithPrefix(prefix)}, opts...)...)
	s.own = true
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis: ping %s: %w", o.Addr, ctxErr(ctx, err))
	}
	if err := s.loadScripts(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	return s, nil
}

// parseURL reads the store's prefix parameter and hands the rest of u to
// go-redis; it does not connect.
func parseURL(u *url.URL) (o *goredis.Options, prefix string, err error) {
	c := *u
	q := c.Query()
	prefix = DefaultPrefix
	if p, ok := q["prefix"]; ok {
		prefix = p[len(p)-1]
	}
	q.Del("prefix")
	c.RawQuery = q.Encode()
	o, err = goredis.ParseURL(c.String())
	if err != nil {
		// go-redis errors name the option, never the password.
		return nil, "", fmt.Errorf("redis: %w", err)
	}
	if o.Network == "tcp" {
		// go-redis takes a host such as "]0" as it comes; refuse an address
		// that cannot be dialled rather than fail later with a dial error.
		if _, _, serr := net.SplitHostPort(o.Addr); serr != nil || strings.ContainsAny(u.Hostname(), "[]") {
			return nil, "", fmt.Errorf("redis: invalid host in the URL: want redis://[user:password@]host:port/db")
		}
	}
	return o, prefix, nil
}

// New returns a store over an existing client, which it does not close.
func New(c goredis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: c, prefix: DefaultPrefix}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Client returns the store's go-redis client (the escape hatch).
func (s *Store) Client() goredis.UniversalClient { return s.c }

// Prefix returns the key prefix.
func (s *Store) Prefix() string { return s.prefix }

// scriptSources is the source of every script, for loadScripts.
var scriptSources = []string{beginSrc, completeSrc, extendSrc, releaseSrc, deleteSrc}

// loadScripts sends every script once (one pipelined round trip), so that
// calls start with EVALSHA and never pay a NOSCRIPT miss. It must not use
// goredis.Script.Load on a pipeline: Load stores the command's value as the
// script's hash before the pipeline runs, that is the empty string, and the
// scripts are shared by every Store of the process, so each later call would
// send EVALSHA "" and fall back to a full EVAL (two round trips instead of one).
func (s *Store) loadScripts(ctx context.Context) error {
	p := s.c.Pipeline()
	for _, src := range scriptSources {
		p.ScriptLoad(ctx, src)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("redis: loading scripts: %w", ctxErr(ctx, err))
	}
	return nil
}

var merchantEscaper = strings.NewReplacer("%", "%25", ":", "%3A")

// Key returns the Redis key of (merchant, key).
func (s *Store) Key(merchant, key string) string {
	return s.prefix + merchantEscaper.Replace(merchant) + ":" + key
}

// globEscape escapes Redis glob metacharacters.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Begin: KEYS[1] record; ARGV merchant, key, fingerprint, token, resource
// id, now, lease expiry, record expiry (ms since the epoch), ttl (ms).
// Returns {1} acquired, {2, f} reacquired, {3, f, body} replay,
// {4, f} in progress, {5, f} mismatch, with f the fields of fieldList.
const beginSrc = `
local k = KEYS[1]
local now = tonumber(ARGV[6])
local f = redis.call('HMGET', k, 'fp', 'st', 'tok', 'rid', 'lease', 'ct', 'exp', 'sc', 'hd')
if f[7] and tonumber(f[7]) <= now then
  redis.call('DEL', k)
  f[7] = false
end
if not f[7] then
  redis.call('HSET', k, 'm', ARGV[1], 'k', ARGV[2], 'fp', ARGV[3], 'st', 'in_progress', 'tok', ARGV[4],
    'rid', ARGV[5], 'lease', ARGV[7], 'ct', ARGV[6], 'exp', ARGV[8])
  redis.call('PEXPIRE', k, ARGV[9])
  return {1}
end
if f[1] ~= ARGV[3] then return {5, f} end
if f[2] == 'completed' then return {3, f, redis.call('HGET', k, 'body')} end
if tonumber(f[5]) > now then return {4, f} end
redis.call('HSET', k, 'tok', ARGV[4], 'lease', ARGV[7])
f[3] = ARGV[4]
f[5] = ARGV[7]
return {2, f}
`

var beginScript = goredis.NewScript(beginSrc)

// Complete: ARGV token, status, headers, body, record expiry (ms), ttl (ms).
const completeSrc = `
local f = redis.call('HMGET', KEYS[1], 'st', 'tok')
if f[1] ~= 'in_progress' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'st', 'completed', 'tok', '', 'sc', ARGV[2], 'hd', ARGV[3], 'body', ARGV[4], 'exp', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
`

var completeScript = goredis.NewScript(completeSrc)

// Extend: ARGV token, lease expiry (ms).
const extendSrc = `
local f = redis.call('HMGET', KEYS[1], 'st', 'tok')
if f[1] ~= 'in_progress' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease', ARGV[2])
return 1
`

var extendScript = goredis.NewScript(extendSrc)

// Release: ARGV token.
const releaseSrc = `
local f = redis.call('HMGET', KEYS[1], 'st', 'tok')
if f[1] ~= 'in_progress' or f[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

var releaseScript = goredis.NewScript(releaseSrc)

// Delete (admin compare-and-delete): ARGV state, token, record expiry (ms).
const deleteSrc = `
local f = redis.call('HMGET', KEYS[1], 'st', 'tok', 'exp')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] or f[3] ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

var deleteScript = goredis.NewScript(deleteSrc)

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func ctxErr(ctx context.Context, err error) error {
	if c := ctx.Err(); c != nil && !errors.Is(err, c) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	return ctx.Err()
}

func (s *Store) fail(ctx context.Context, op string, err error) error {
	return fmt.Errorf("redis: %s: %w", op, ctxErr(ctx, err))
}

// Begin implements driver.Store.
func (s *Store) Begin(ctx context.Context, r *driver.BeginRequest) (*driver.BeginResult, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	ttl := max(r.TTL.Milliseconds(), 1)
	v, err := beginScript.Run(ctx, s.c, []string{s.Key(r.Merchant, r.Key)},
		r.Merchant, r.Key, r.Fingerprint, r.Token, r.ResourceID,
		ms(r.Now), ms(r.Now.Add(r.Lease)), ms(r.Now.Add(r.TTL)), ttl).Slice()
	if err != nil {
		return nil, s.fail(ctx, "begin", err)
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("redis: begin: empty script reply")
	}
	code, _ := v[0].(int64)
	if code == 1 {
		return &driver.BeginResult{Outcome: driver.Acquired, Record: &driver.Record{
			Merchant: r.Merchant, Key: r.Key, Fingerprint: r.Fingerprint, State: driver.StateInProgress,
			Token: r.Token, ResourceID: r.ResourceID, LeaseExpiresAt: time.UnixMilli(r.Now.Add(r.Lease).UnixMilli()),
			CreatedAt: time.UnixMilli(r.Now.UnixMilli()), ExpiresAt: time.UnixMilli(r.Now.Add(r.TTL).UnixMilli()),
		}}, nil
	}
	if len(v) < 2 || code < 2 || code > 5 {
		return nil, fmt.Errorf("redis: begin: unexpected script reply %v", v[0])
	}
	f, _ := v[1].([]any)
	rec, err := decode(r.Merchant, r.Key, f)
	if err != nil {
		return nil, fmt.Errorf("redis: begin: %w", err)
	}
	out := &driver.BeginResult{Record: rec}
	switch code {
	case 2:
		out.Outcome = driver.Reacquired
	case 3:
		out.Outcome = driver.Replay
		if len(v) > 2 {
			rec.Response.Body = bytesOf(v[2])
		}
	case 4:
		out.Outcome = driver.InProgress
	case 5:
		out.Outcome = driver.Mismatch
	}
	return out, nil
}

// fieldList is the order of the fields decode reads.
var fieldList = []string{"fp", "st", "tok", "rid", "lease", "ct", "exp", "sc", "hd"}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func bytesOf(v any) []byte {
	if s, ok := v.(string); ok && s != "" {
		return []byte(s)
	}
	return nil
}

func msTime(v any) (time.Time, error) {
	n, err := strconv.ParseInt(str(v), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("corrupt time field %q", str(v))
	}
	return time.UnixMilli(n), nil
}

// decode builds a record from fields in fieldList order.
func decode(merchant, key string, f []any) (*driver.Record, error) {
	if len(f) < len(fieldList) {
		return nil, fmt.Errorf("short record (%d fields)", len(f))
	}
	rec := &driver.Record{Merchant: merchant, Key: key, Fingerprint: str(f[0]), State: driver.State(str(f[1])),
		Token: str(f[2]), ResourceID: str(f[3])}
	var err error
	if rec.LeaseExpiresAt, err = msTime(f[4]); err != nil {
		return nil, err
	}
	if rec.CreatedAt, err = msTime(f[5]); err != nil {
		return nil, err
	}
	if rec.ExpiresAt, err = msTime(f[6]); err != nil {
		return nil, err
	}
	if rec.State == driver.StateCompleted {
		sc, _ := strconv.Atoi(str(f[7]))
		rec.Response = &driver.Response{StatusCode: sc}
		if h := str(f[8]); h != "" {
			if err := json.Unmarshal([]byte(h), &rec.Response.Header); err != nil {
				return nil, fmt.Errorf("corrupt headers: %w", err)
			}
		}
	}
	return rec, nil
}

func (s *Store) cond(ctx context.Context, op string, sc *goredis.Script, key string, args ...any) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	n, err := sc.Run(ctx, s.c, []string{key}, args...).Int64()
	if err != nil {
		return s.fail(ctx, op, err)
	}
	if n == 0 {
		return driver.ErrLeaseLost
	}
	return nil
}

// Complete implements driver.Store.
func (s *Store) Complete(ctx context.Context, r driver.CompleteRequest) error {
	resp := r.Response
	if resp == nil {
		resp = &driver.Response{}
	}
	var hd []byte
	if len(resp.Header) > 0 {
		// Headers are kept as JSON, which would replace invalid UTF-8 by
		// U+FFFD: refuse what cannot come back exactly.
		for k, v := range resp.Header {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return fmt.Errorf("redis: complete: %w: a header name or value is not valid UTF-8", driver.ErrInvalidInput)
			}
		}
		var err error
		if hd, err = json.Marshal(resp.Header); err != nil {
			return fmt.Errorf("redis: complete: headers: %w", err)
		}
	}
	body := resp.Body
	if body == nil {
		body = []byte{}
	}
	return s.cond(ctx, "complete", completeScript, s.Key(r.Merchant, r.Key),
		r.Token, resp.StatusCode, hd, body, ms(r.Now.Add(r.TTL)), max(r.TTL.Milliseconds(), 1))
}

// Extend implements driver.Store.
func (s *Store) Extend(ctx context.Context, r driver.ExtendRequest) error {
	return s.cond(ctx, "extend", extendScript, s.Key(r.Merchant, r.Key), r.Token, ms(r.Now.Add(r.Lease)))
}

// Release implements driver.Store.
func (s *Store) Release(ctx context.Context, merchant, key, token string) error {
	return s.cond(ctx, "release", releaseScript, s.Key(merchant, key), token)
}

// Delete implements driver.Admin: it deletes the record only if its state,
// token and expiry are still those of r.
func (s *Store) Delete(ctx context.Context, r *driver.Record) error {
	return s.cond(ctx, "delete", deleteScript, s.Key(r.Merchant, r.Key), string(r.State), r.Token, ms(r.ExpiresAt))
}

var allFields = append(slices.Clone(fieldList), "body", "m", "k")

// Get implements driver.Admin.
func (s *Store) Get(ctx context.Context, merchant, key string) (*driver.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	f, err := s.c.HMGet(ctx, s.Key(merchant, key), allFields...).Result()
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	return s.fromFields(merchant, key, f)
}

func (s *Store) fromFields(merchant, key string, f []any) (*driver.Record, error) {
	if f[6] == nil { // no expiry field: no record
		return nil, driver.ErrNotFound
	}
	rec, err := decode(merchant, key, f)
	if err != nil {
		return nil, fmt.Errorf("redis: record %s/%s: %w", merchant, key, err)
	}
	if rec.Response != nil {
		rec.Response.Body = bytesOf(f[len(fieldList)])
	}
	return rec, nil
}

// DefaultListLimit is List's page size when the filter sets none.
const DefaultListLimit = 100

// scanCount is the COUNT hint of the SCAN calls made by List.
const scanCount = 1000

// List implements driver.Admin. Redis keeps no order, so List scans the
// keys under the prefix (SCAN, which does not block the server), reads the
// merchant, key and state of each, sorts, and then reads the page's
// records in full: its cost grows with the number of records, which suits
// operations tooling, not request paths.
func (s *Store) List(ctx context.Context, f driver.Filter) ([]*driver.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	match := globEscape(s.prefix) + "*"
	if f.Merchant != "" {
		match = globEscape(s.prefix+merchantEscaper.Replace(f.Merchant)+":") + "*"
	}
	keys, err := s.scan(ctx, match)
	if err != nil {
		return nil, s.fail(ctx, "list", err)
	}
	type entry struct{ redisKey, merchant, key string }
	var found []entry
	const batch = 500
	for i := 0; i < len(keys); i += batch {
		p := s.c.Pipeline()
		cmds := make([]*goredis.SliceCmd, 0, batch)
		for _, k := range keys[i:min(i+batch, len(keys))] {
			cmds = append(cmds, p.HMGet(ctx, k, "m", "k", "st"))
		}
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, s.fail(ctx, "list", err)
		}
		for j, c := range cmds {
			v := c.Val()
			if len(v) < 3 || v[0] == nil || v[1] == nil {
				continue // expired meanwhile, or not a record
			}
			e := entry{keys[i+j], str(v[0]), str(v[1])}
			if f.Merchant != "" && e.merchant != f.Merchant {
				continue
			}
			if f.State != "" && str(v[2]) != string(f.State) {
				continue
			}
			if (f.AfterMerchant != "" || f.AfterKey != "") &&
				(e.merchant < f.AfterMerchant || e.merchant == f.AfterMerchant && e.key <= f.AfterKey) {
				continue
			}
			found = append(found, e)
		}
	}
	slices.SortFunc(found, func(a, b entry) int {
		if c := strings.Compare(a.merchant, b.merchant); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	if len(found) > limit {
		found = found[:limit]
	}
	p := s.c.Pipeline()
	cmds := make([]*goredis.SliceCmd, len(found))
	for i, e := range found {
		cmds[i] = p.HMGet(ctx, e.redisKey, allFields...)
	}
	if len(found) > 0 {
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, s.fail(ctx, "list", err)
		}
	}
	out := make([]*driver.Record, 0, len(found))
	for i, e := range found {
		rec, err := s.fromFields(e.merchant, e.key, cmds[i].Val())
		if errors.Is(err, driver.ErrNotFound) {
			continue // deleted or expired between the two reads
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// scan returns the keys matching match, on every master of a cluster.
func (s *Store) scan(ctx context.Context, match string) ([]string, error) {
	scanOne := func(ctx context.Context, c goredis.Cmdable) ([]string, error) {
		var out []string
		iter := c.Scan(ctx, 0, match, scanCount).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return out, iter.Err()
	}
	cc, ok := s.c.(*goredis.ClusterClient)
	if !ok {
		return scanOne(ctx, s.c)
	}
	var (
		mu  sync.Mutex
		all []string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		keys, err := scanOne(ctx, c)
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	return all, err
}

// Ping implements driver.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close implements driver.Store. It closes the client if Open created it.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return driver.ErrClosed
	}
	if s.own {
		return s.c.Close()
	}
	return nil
}
