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
// Each record is one string value under <prefix><merchant>:<key> (":" and
// "%" in the merchant percent-encoded): its state, lease token, expiry,
// lease expiry, fingerprint, resource id, creation time, merchant and key,
// and once completed the response's status, headers and body, each
// length-prefixed, so that every byte is kept as it came (Redis is
// binary-safe). Begin is one SET NX GET: it claims a free key, or reads
// the record already there and reports a replay, a conflict or a mismatch
// without writing; only taking over a lapsed lease (or a record past its
// logical expiry) adds a compare-and-swap script. Complete, Extend and
// Release are each one Lua script that acts only for the lease token's
// holder. A request that executes costs two round trips, a replay one
// (scripts run by EVALSHA; after a server restart the first call of each
// script re-sends it). Records expire through Redis's own TTL, and the
// caller's clock is also checked against the stored expiry, so that a
// record past its logical expiry is never replayed.
//
// It needs Redis 7.0 or later (SET with both NX and GET). Records written
// by earlier versions of this package, which kept a hash per record, are
// not read: an operation on one fails with Redis's WRONGTYPE error (never
// a second execution) until it expires.
//
// Since every command and script touches a single key, the store works on
// Redis Cluster too (pass a *redis.ClusterClient to New); List then scans
// every master.
package redis

import (
	"context"
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
var scriptSources = []string{swapSrc, completeSrc, extendSrc, deleteSrc}

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

// A record is one string value (see the package documentation): its state
// ('i' in progress, 'c' completed), then netstrings (<decimal length>:<bytes>)
// in this order: lease token, record expiry, lease expiry (ms since the
// epoch), fingerprint, resource id, creation time, merchant, key, and for a
// completed record the status code, the headers (netstring pairs) and the
// body. The fields a conditional write checks (state, token, expiry) come
// first, so that a script checks a lease holder by comparing the value's
// prefix, and rewrites a record by splicing what follows.
const (
	stateInProgress = 'i'
	stateCompleted  = 'c'
)

// appendNS appends v as a netstring.
func appendNS(b []byte, v string) []byte {
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

// appendNSInt appends the decimal n as a netstring.
func appendNSInt(b []byte, n int64) []byte {
	var d [20]byte
	v := strconv.AppendInt(d[:0], n, 10)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

// holder is the prefix of an in-progress record whose lease token is token:
// what Complete, Extend and Release compare.
func holder(b []byte, token string) []byte { return appendNS(append(b, stateInProgress), token) }

// encodeClaim is the value of the record Begin creates.
func encodeClaim(r *driver.BeginRequest) []byte {
	now := r.Now.UnixMilli()
	b := make([]byte, 0, 80+len(r.Token)+len(r.Fingerprint)+len(r.ResourceID)+len(r.Merchant)+len(r.Key))
	b = holder(b, r.Token)
	b = appendNSInt(b, r.Now.Add(r.TTL).UnixMilli())
	b = appendNSInt(b, r.Now.Add(r.Lease).UnixMilli())
	b = appendNS(b, r.Fingerprint)
	b = appendNS(b, r.ResourceID)
	b = appendNSInt(b, now)
	b = appendNS(b, r.Merchant)
	return appendNS(b, r.Key)
}

// errCorrupt: a value under the store's prefix that is not a record.
var errCorrupt = errors.New("not an idempotency record (corrupt, or written by something else)")

// fields reads a record's netstrings.
type fields struct {
	s   string
	bad bool
}

func (f *fields) next() string {
	i := strings.IndexByte(f.s, ':')
	n, err := strconv.Atoi(f.s[:max(i, 0)])
	if i <= 0 || err != nil || n < 0 || n > len(f.s)-i-1 {
		f.bad = true
		f.s = ""
		return ""
	}
	v := f.s[i+1 : i+1+n]
	f.s = f.s[i+1+n:]
	return v
}

func (f *fields) ms() time.Time {
	v := f.next()
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f.bad = true
	}
	return time.UnixMilli(n)
}

// decode parses a record's value. Its strings share v's memory.
func decode(v string) (*driver.Record, error) {
	if v == "" || v[0] != stateInProgress && v[0] != stateCompleted {
		return nil, errCorrupt
	}
	f := fields{s: v[1:]}
	rec := &driver.Record{State: driver.StateInProgress, Token: f.next(), ExpiresAt: f.ms(), LeaseExpiresAt: f.ms(),
		Fingerprint: f.next(), ResourceID: f.next(), CreatedAt: f.ms(), Merchant: f.next(), Key: f.next()}
	if v[0] == stateCompleted {
		rec.State = driver.StateCompleted
		sc, err := strconv.Atoi(f.next())
		if err != nil {
			f.bad = true
		}
		rec.Response = &driver.Response{StatusCode: sc}
		if hd := (fields{s: f.next()}); hd.s != "" {
			rec.Response.Header = make(map[string]string)
			for hd.s != "" && !hd.bad {
				k := hd.next()
				rec.Response.Header[k] = hd.next()
			}
			f.bad = f.bad || hd.bad
		}
		if body := f.next(); body != "" {
			rec.Response.Body = []byte(body)
		}
	}
	if f.bad || f.s != "" {
		return nil, errCorrupt
	}
	return rec, nil
}

// skip returns the index in v just past the netstring that starts at i, or
// -1.
func skip(v string, i int) int {
	f := fields{s: v[i:]}
	f.next()
	if f.bad {
		return -1
	}
	return len(v) - len(f.s)
}

// Scripts. Each checks the record's prefix (its state and lease token, for
// Delete its expiry too) and rewrites or deletes it; 0 means the check
// failed (or no record), 1 done.

// Swap (Begin's takeover of a lapsed lease or of an expired record):
// ARGV old value, new value, ttl (ms; empty: keep the key's TTL).
const swapSrc = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`

var swapScript = goredis.NewScript(swapSrc)

// Complete: ARGV holder prefix, the new record's state, token and expiry,
// status and headers and the body's length prefix, body, ttl (ms). The
// record's lease expiry and the rest are kept.
const completeSrc = `
local v = redis.call('GET', KEYS[1])
local n = #ARGV[1]
if not v or string.sub(v, 1, n) ~= ARGV[1] then return 0 end
local c = string.find(v, ':', n + 1, true)
local e = c + tonumber(string.sub(v, n + 1, c - 1))
redis.call('SET', KEYS[1], ARGV[2] .. string.sub(v, e + 1) .. ARGV[3] .. ARGV[4], 'PX', ARGV[5])
return 1
`

var completeScript = goredis.NewScript(completeSrc)

// Extend: ARGV holder prefix, the new lease expiry's netstring.
const extendSrc = `
local v = redis.call('GET', KEYS[1])
local n = #ARGV[1]
if not v or string.sub(v, 1, n) ~= ARGV[1] then return 0 end
local c = string.find(v, ':', n + 1, true)
local e = c + tonumber(string.sub(v, n + 1, c - 1))
c = string.find(v, ':', e + 1, true)
local l = c + tonumber(string.sub(v, e + 1, c - 1))
redis.call('SET', KEYS[1], string.sub(v, 1, e) .. ARGV[2] .. string.sub(v, l + 1), 'KEEPTTL')
return 1
`

var extendScript = goredis.NewScript(extendSrc)

// Release, and Delete (the admin compare-and-delete): ARGV the prefix the
// record must start with.
const deleteSrc = `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

var deleteScript = goredis.NewScript(deleteSrc)

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

// maxSwaps bounds Begin's attempts to take over a record that other
// requests keep changing under it.
const maxSwaps = 8

// Begin implements driver.Store. It is one SET NX GET: the claim, written
// only if the key is free, and the record already there, if any, read in
// the same command; only taking over a lapsed lease or an expired record
// costs a second round trip (a compare-and-swap script).
func (s *Store) Begin(ctx context.Context, r *driver.BeginRequest) (*driver.BeginResult, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	key := s.Key(r.Merchant, r.Key)
	claim := encodeClaim(r)
	ttl := max(r.TTL.Milliseconds(), 1)
	now := r.Now.UnixMilli()
	for range maxSwaps {
		cmd := goredis.NewStringCmd(ctx, "set", key, claim, "px", ttl, "nx", "get")
		_ = s.c.Process(ctx, cmd)
		old, err := cmd.Result()
		if errors.Is(err, goredis.Nil) {
			return s.acquired(r), nil
		}
		if err != nil {
			return nil, s.fail(ctx, "begin", err)
		}
		rec, err := decode(old)
		if err != nil {
			return nil, fmt.Errorf("redis: begin: record %s/%s: %w", r.Merchant, r.Key, err)
		}
		switch {
		case rec.ExpiresAt.UnixMilli() <= now:
			// Past its logical expiry (the caller's clock is ahead of
			// Redis's TTL): a new claim replaces it.
			ok, err := s.swap(ctx, key, old, claim, strconv.FormatInt(ttl, 10))
			if err != nil {
				return nil, err
			}
			if ok {
				return s.acquired(r), nil
			}
		case rec.Fingerprint != r.Fingerprint:
			return &driver.BeginResult{Outcome: driver.Mismatch, Record: rec}, nil
		case rec.State == driver.StateCompleted:
			return &driver.BeginResult{Outcome: driver.Replay, Record: rec}, nil
		case rec.LeaseExpiresAt.UnixMilli() > now:
			return &driver.BeginResult{Outcome: driver.InProgress, Record: rec}, nil
		default:
			// The lease lapsed: take it over, keeping the record (its
			// resource id, creation and expiry) and its TTL.
			lease := r.Now.Add(r.Lease).UnixMilli()
			i := skip(old, 1)         // past the token
			j := skip(old, max(i, 1)) // past the expiry
			k := skip(old, max(j, 1)) // past the lease
			if i < 0 || j < 0 || k < 0 {
				return nil, fmt.Errorf("redis: begin: record %s/%s: %w", r.Merchant, r.Key, errCorrupt)
			}
			nv := holder(make([]byte, 0, len(old)+len(r.Token)+8), r.Token)
			nv = append(nv, old[i:j]...)
			nv = appendNSInt(nv, lease)
			nv = append(nv, old[k:]...)
			ok, err := s.swap(ctx, key, old, nv, "")
			if err != nil {
				return nil, err
			}
			if ok {
				rec.Token, rec.LeaseExpiresAt = r.Token, time.UnixMilli(lease)
				return &driver.BeginResult{Outcome: driver.Reacquired, Record: rec}, nil
			}
		}
		// The record changed between the read and the swap: look again.
	}
	return nil, fmt.Errorf("redis: begin: record %s/%s changed %d times during the claim", r.Merchant, r.Key, maxSwaps)
}

// acquired is Begin's result for a new claim.
func (s *Store) acquired(r *driver.BeginRequest) *driver.BeginResult {
	return &driver.BeginResult{Outcome: driver.Acquired, Record: &driver.Record{
		Merchant: r.Merchant, Key: r.Key, Fingerprint: r.Fingerprint, State: driver.StateInProgress,
		Token: r.Token, ResourceID: r.ResourceID, LeaseExpiresAt: time.UnixMilli(r.Now.Add(r.Lease).UnixMilli()),
		CreatedAt: time.UnixMilli(r.Now.UnixMilli()), ExpiresAt: time.UnixMilli(r.Now.Add(r.TTL).UnixMilli()),
	}}
}

// swap replaces the value old of key by nv, if it is still old.
func (s *Store) swap(ctx context.Context, key, old string, nv []byte, ttl string) (bool, error) {
	n, err := swapScript.Run(ctx, s.c, []string{key}, old, nv, ttl).Int64()
	if err != nil {
		return false, s.fail(ctx, "begin", err)
	}
	return n == 1, nil
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
	b := make([]byte, 0, 64+len(r.Token)+32*len(resp.Header))
	b = holder(b, r.Token)
	h := len(b)
	b = appendNS(append(b, stateCompleted), "")
	b = appendNSInt(b, r.Now.Add(r.TTL).UnixMilli())
	c := len(b)
	b = appendNSInt(b, int64(resp.StatusCode))
	hd := len(b)
	for k, v := range resp.Header {
		b = appendNS(appendNS(b, k), v)
	}
	// The headers' netstring: its length prefix goes before the pairs.
	var lp [24]byte
	pre := append(strconv.AppendInt(lp[:0], int64(len(b)-hd), 10), ':')
	b = slices.Insert(b, hd, pre...)
	b = append(strconv.AppendInt(b, int64(len(resp.Body)), 10), ':')
	body := resp.Body
	if body == nil {
		body = []byte{}
	}
	v := string(b)
	return s.cond(ctx, "complete", completeScript, s.Key(r.Merchant, r.Key),
		v[:h], v[h:c], v[c:], body, max(r.TTL.Milliseconds(), 1))
}

// Extend implements driver.Store.
func (s *Store) Extend(ctx context.Context, r driver.ExtendRequest) error {
	b := holder(make([]byte, 0, 48+len(r.Token)), r.Token)
	h := len(b)
	b = appendNSInt(b, r.Now.Add(r.Lease).UnixMilli())
	v := string(b)
	return s.cond(ctx, "extend", extendScript, s.Key(r.Merchant, r.Key), v[:h], v[h:])
}

// Release implements driver.Store.
func (s *Store) Release(ctx context.Context, merchant, key, token string) error {
	return s.cond(ctx, "release", deleteScript, s.Key(merchant, key), holder(nil, token))
}

// Delete implements driver.Admin: it deletes the record only if its state,
// token and expiry are still those of r.
func (s *Store) Delete(ctx context.Context, r *driver.Record) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	var b []byte
	switch r.State {
	case driver.StateInProgress:
		b = append(b, stateInProgress)
	case driver.StateCompleted:
		b = append(b, stateCompleted)
	default:
		return driver.ErrLeaseLost // no record has that state
	}
	b = appendNSInt(appendNS(b, r.Token), r.ExpiresAt.UnixMilli())
	return s.cond(ctx, "delete", deleteScript, s.Key(r.Merchant, r.Key), b)
}

// Get implements driver.Admin.
func (s *Store) Get(ctx context.Context, merchant, key string) (*driver.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	v, err := s.c.Get(ctx, s.Key(merchant, key)).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, driver.ErrNotFound
	}
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	rec, err := decode(v)
	if err != nil {
		return nil, fmt.Errorf("redis: record %s/%s: %w", merchant, key, err)
	}
	return rec, nil
}

// DefaultListLimit is List's page size when the filter sets none.
const DefaultListLimit = 100

// scanCount is the COUNT hint of the SCAN calls made by List.
const scanCount = 1000

// List implements driver.Admin. Redis keeps no order, so List scans the
// keys under the prefix (SCAN, which does not block the server), reads the
// records (pipelined GETs), filters and sorts them: its cost grows with the
// number of records, which suits operations tooling, not request paths.
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
	var found []*driver.Record
	const batch = 500
	for i := 0; i < len(keys); i += batch {
		p := s.c.Pipeline()
		cmds := make([]*goredis.StringCmd, 0, batch)
		for _, k := range keys[i:min(i+batch, len(keys))] {
			cmds = append(cmds, p.Get(ctx, k))
		}
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, s.fail(ctx, "list", err)
		}
		for j, c := range cmds {
			v, err := c.Result()
			if err != nil {
				continue // expired meanwhile
			}
			rec, err := decode(v)
			if err != nil {
				return nil, fmt.Errorf("redis: list: key %q: %w", keys[i+j], err)
			}
			if f.Merchant != "" && rec.Merchant != f.Merchant ||
				f.State != "" && rec.State != f.State ||
				(f.AfterMerchant != "" || f.AfterKey != "") &&
					(rec.Merchant < f.AfterMerchant || rec.Merchant == f.AfterMerchant && rec.Key <= f.AfterKey) {
				continue
			}
			found = append(found, rec)
		}
	}
	slices.SortFunc(found, func(a, b *driver.Record) int {
		if c := strings.Compare(a.Merchant, b.Merchant); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if len(found) > limit {
		found = found[:limit]
	}
	return found, nil
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
