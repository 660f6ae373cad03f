// Package dynamodb is an Amazon DynamoDB idempotency store, registered as
// "dynamodb", built on aws-sdk-go-v2's service/dynamodb.
//
// URL: dynamodb://<table>?region=eu-west-1&endpoint=http://127.0.0.1:8000
//
// Credentials and the region come from the SDK's standard configuration
// chain (environment, shared config files, IAM roles); region overrides the
// region, and endpoint points the client at another server such as DynamoDB
// Local. Open checks that the table exists (ErrTableMissing otherwise); the
// table has one string partition key, pk, and a TTL attribute, ttl —
// CreateTable makes one for development, and the same definition suits
// infrastructure code.
//
// # Items and round trips
//
// Each record is one item keyed by <merchant>:<key> (":", "%" and newlines
// in the merchant percent-encoded). Begin is one conditional UpdateItem,
// `attribute_not_exists(pk) OR (in progress AND same fingerprint AND lease
// lapsed AND not expired)`, returning the old item both when it succeeds
// (a takeover resumes the old ResourceID) and, through
// ReturnValuesOnConditionCheckFailure=ALL_OLD, when it fails (a replay, a
// conflict or a mismatch is answered from the returned item). A request
// that executes costs two round trips (Begin, then Complete, a conditional
// UpdateItem), a replay one. One case costs a second Begin round trip: a
// key whose record is past its expiry but not yet deleted by DynamoDB's TTL
// (which deletes lazily, within days of the ttl attribute, itself TTLGrace
// after the record's expiry), replaced by a conditional PutItem.
// Extend is a conditional UpdateItem and Release a conditional DeleteItem,
// both on the lease token. Expiry is always checked against the caller's
// clock, never left to DynamoDB's TTL alone.
//
// # Values the store refuses
//
// DynamoDB strings are UTF-8 and its keys short: a request with invalid
// UTF-8 in any string, a merchant and key longer than MaxPKBytes together,
// or fields or headers over MaxFieldsBytes or MaxHeaderBytes is refused
// before the round trip with driver.ErrInvalidInput (naming the field,
// never the value). Other values (NUL bytes, empty strings) are kept
// exactly. A ValidationException from DynamoDB matches ErrInvalidInput
// too.
//
// # Large bodies
//
// An item holds at most 400 KB. Response bodies up to InlineBodyMax bytes
// are kept in the record's item; larger ones (up to MaxBodyBytes, a
// transaction's limit) are split into chunk items written in the same
// transaction as the completion (TransactWriteItems), and a replay of such
// a body costs one more round trip (BatchGetItem, strongly consistent).
// Bodies beyond MaxBodyBytes are refused with ErrBodyTooLarge.
package dynamodb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
)

func init() { idempotency.Register("dynamodb", opener{}) }

type opener struct{}

func (opener) Open(ctx context.Context, u *url.URL) (driver.Store, error) { return OpenURL(ctx, u) }

// Errors.
var (
	// ErrTableMissing: the table named by the URL does not exist.
	ErrTableMissing = errors.New("dynamodb: idempotency table missing")
	// ErrBodyTooLarge: Complete with a body over MaxBodyBytes.
	ErrBodyTooLarge = errors.New("dynamodb: response body too large")
)

// Body limits.
const (
	// InlineBodyMax is the largest body kept in the record's own item.
	InlineBodyMax = 300 << 10
	// chunkSize is the body bytes per chunk item.
	chunkSize = 300 << 10
	// MaxBodyBytes is the largest body stored: a transaction carries at
	// most 4 MB.
	MaxBodyBytes = 3 << 20
)

// Store is the DynamoDB idempotency store. It implements driver.Store,
// driver.Admin and driver.Pinger.
type Store struct {
	c      *dynamodb.Client
	table  *string
	closed atomic.Bool
}

var tableRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)

// The interfaces Store implements.
var (
	_ driver.Store  = (*Store)(nil)
	_ driver.Admin  = (*Store)(nil)
	_ driver.Pinger = (*Store)(nil)
)

// Open opens the store at urlstr (see the package documentation).
func Open(ctx context.Context, urlstr string) (*Store, error) {
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, errors.New("dynamodb: malformed URL")
	}
	return OpenURL(ctx, u)
}

// OpenURL is Open with a parsed URL.
func OpenURL(ctx context.Context, u *url.URL) (*Store, error) {
	p, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	var loadOpts []func(*config.LoadOptions) error
	var clientOpts []func(*dynamodb.Options)
	if p.region != nil {
		loadOpts = append(loadOpts, config.WithRegion(*p.region))
	}
	if p.endpoint != nil {
		clientOpts = append(clientOpts, func(o *dynamodb.Options) { o.BaseEndpoint = p.endpoint })
	}
	table := p.table
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: AWS configuration: %w", err)
	}
	return New(ctx, dynamodb.NewFromConfig(cfg, clientOpts...), table)
}

// urlParams is a parsed URL; nil fields were not given.
type urlParams struct {
	table    string
	region   *string
	endpoint *string
}

// parseURL reads the table, region and endpoint from u (the table name is
// checked by New); it does not load the AWS configuration.
func parseURL(u *url.URL) (urlParams, error) {
	if u.User != nil {
		return urlParams{}, errors.New("dynamodb: the URL takes no user information: credentials come from the AWS SDK's configuration chain")
	}
	p := urlParams{table: u.Host}
	if p.table == "" {
		p.table = strings.Trim(u.Path, "/")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// Query() drops malformed parameters silently; the error of
		// ParseQuery may quote a value, so it is not repeated.
		return urlParams{}, errors.New("dynamodb: malformed URL parameters (check their percent-encoding)")
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "region":
			p.region = aws.String(v)
		case "endpoint":
			if e, err := url.Parse(v); err != nil || e.Scheme == "" || e.Host == "" {
				return urlParams{}, fmt.Errorf("dynamodb: endpoint %q: want a URL such as http://127.0.0.1:8000", v)
			}
			p.endpoint = aws.String(v)
		default:
			return urlParams{}, fmt.Errorf("dynamodb: unknown URL parameter %q (want region, endpoint)", k)
		}
	}
	return p, nil
}

// New returns a store over an existing client, after checking that table
// exists.
func New(ctx context.Context, c *dynamodb.Client, table string) (*Store, error) {
	if !tableRE.MatchString(table) {
		return nil, fmt.Errorf("dynamodb: table name %q: want 3 to 255 letters, digits, '_', '-' or '.' (dynamodb://<table>?region=...)", table)
	}
	_, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("%w: table %q does not exist; create it (CreateTable, or your infrastructure code)", ErrTableMissing, table)
	}
	if err != nil {
		return nil, fmt.Errorf("dynamodb: describe table %q: %w", table, ctxErr(ctx, err))
	}
	return &Store{c: c, table: aws.String(table)}, nil
}

// CreateTable creates table with the store's key schema (pk, a string),
// on-demand capacity and TTL on the ttl attribute, and waits until it is
// active. An existing table is left as it is. For development and tests;
// production tables belong in infrastructure code.
func CreateTable(ctx context.Context, c *dynamodb.Client, table string) error {
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(aPK), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(aPK), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamodb: create table %q: %w", table, err)
	}
	if err := dynamodb.NewTableExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("dynamodb: waiting for table %q: %w", table, err)
	}
	ttl, err := c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("dynamodb: describe TTL of %q: %w", table, err)
	}
	if d := ttl.TimeToLiveDescription; d != nil && (d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		return nil
	}
	_, err = c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(aTTL), Enabled: aws.Bool(true)}})
	if err != nil {
		return fmt.Errorf("dynamodb: enable TTL on %q: %w", table, err)
	}
	return nil
}

// Client returns the store's DynamoDB client (the escape hatch).
func (s *Store) Client() *dynamodb.Client { return s.c }

// Table returns the table name.
func (s *Store) Table() string { return *s.table }

// Attribute names.
const (
	aPK     = "pk"
	aM      = "m"
	aK      = "k"
	aFP     = "fp"
	aSt     = "st"
	aTok    = "tok"
	aRID    = "rid"
	aLease  = "lease"
	aCT     = "ct"
	aExp    = "exp"
	aTTL    = "ttl"
	aSC     = "sc"
	aHd     = "hd"
	aBody   = "body"
	aChunks = "chunks"
	aGen    = "gen"
)

// names maps every #name of the expressions to its attribute.
var names = map[string]string{
	"#pk": aPK, "#m": aM, "#k": aK, "#fp": aFP, "#st": aSt, "#tok": aTok, "#rid": aRID, "#lease": aLease,
	"#ct": aCT, "#exp": aExp, "#ttl": aTTL, "#sc": aSC, "#hd": aHd, "#body": aBody, "#chunks": aChunks, "#gen": aGen,
}

func namesFor(exprs ...string) map[string]string {
	out := map[string]string{}
	for n, a := range names {
		for _, e := range exprs {
			if containsName(e, n) {
				out[n] = a
			}
		}
	}
	return out
}

func containsName(expr, name string) bool {
	for i := strings.Index(expr, name); i >= 0; {
		end := i + len(name)
		if end == len(expr) || !isIdent(expr[end]) {
			return true
		}
		j := strings.Index(expr[end:], name)
		if j < 0 {
			return false
		}
		i = end + j
	}
	return false
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

var merchantEscaper = strings.NewReplacer("%", "%25", ":", "%3A", "\n", "%0A")

func pk(merchant, key string) string { return merchantEscaper.Replace(merchant) + ":" + key }

// chunkPK is the key of a body chunk; keys are printable ASCII, so the
// newline separator never collides with a record's key.
func chunkPK(recPK, gen string, i int) string { return recPK + "\n" + gen + "\n" + strconv.Itoa(i) }

func sv(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func nv(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func keyOf(p string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{aPK: sv(p)}
}

func ctxErr(ctx context.Context, err error) error {
	if c := ctx.Err(); c != nil && !errors.Is(err, c) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}

func (s *Store) fail(ctx context.Context, op string, err error) error {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("dynamodb: %s: %w: table %q: %w", op, ErrTableMissing, *s.table, err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "ValidationException" {
		// The request's values break a DynamoDB limit (the checks below
		// catch the known ones first). The message may quote a value:
		// keep the code and the request id only.
		var re *awshttp.ResponseError
		id := ""
		if errors.As(err, &re) {
			id = " (request id " + re.ServiceRequestID() + ")"
		}
		return fmt.Errorf("dynamodb: %s: %w: %s%s", op, driver.ErrInvalidInput, ae.ErrorCode(), id)
	}
	return fmt.Errorf("dynamodb: %s: %w", op, ctxErr(ctx, err))
}

// DynamoDB limits on what the store keeps, checked before the round trip.
const (
	// MaxPKBytes is DynamoDB's limit on a partition key value: the
	// merchant (escaped) and the key together.
	MaxPKBytes = 2048
	// MaxFieldsBytes bounds the fingerprint, token and resource id
	// together, and MaxHeaderBytes the names and values of a stored
	// response's headers: with an inline body, a record stays under
	// DynamoDB's 400 KB item limit.
	MaxFieldsBytes = 32 << 10
	MaxHeaderBytes = 32 << 10
)

// validText reports whether every string can be kept exactly: DynamoDB
// strings are UTF-8, and the SDK's JSON encoding would replace invalid
// bytes by U+FFFD (so that two different keys could name one record).
func validText(vs ...string) bool {
	for _, v := range vs {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// storable reports whether a record of merchant and key with token could
// exist: the writes conditional on a token answer ErrLeaseLost for the
// others, and Get ErrNotFound, without a round trip.
func storable(merchant, key, token string) bool {
	return validText(merchant, key, token) && len(pk(merchant, key)) <= MaxPKBytes
}

// validateBegin refuses a request the store cannot keep exactly; the
// error names the field, never the value.
func validateBegin(r *driver.BeginRequest) error {
	why := ""
	switch {
	case !validText(r.Merchant):
		why = "merchant is not valid UTF-8"
	case !validText(r.Key):
		why = "key is not valid UTF-8"
	case !validText(r.Fingerprint):
		why = "fingerprint is not valid UTF-8"
	case !validText(r.Token):
		why = "token is not valid UTF-8"
	case !validText(r.ResourceID):
		why = "resource id is not valid UTF-8"
	case len(pk(r.Merchant, r.Key)) > MaxPKBytes:
		why = fmt.Sprintf("merchant and key are longer than %d bytes together", MaxPKBytes)
	case len(r.Fingerprint)+len(r.Token)+len(r.ResourceID) > MaxFieldsBytes:
		why = fmt.Sprintf("fingerprint, token and resource id are longer than %d bytes together", MaxFieldsBytes)
	default:
		return nil
	}
	return fmt.Errorf("dynamodb: begin: %w: %s", driver.ErrInvalidInput, why)
}

func validateHeaders(h map[string]string) error {
	n := 0
	for k, v := range h {
		if !validText(k, v) {
			return fmt.Errorf("dynamodb: complete: %w: a header name or value is not valid UTF-8", driver.ErrInvalidInput)
		}
		n += len(k) + len(v)
	}
	if n > MaxHeaderBytes {
		return fmt.Errorf("dynamodb: complete: %w: headers longer than %d bytes", driver.ErrInvalidInput, MaxHeaderBytes)
	}
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	return ctx.Err()
}

// TTLGrace is how long after its expiry a record is left for DynamoDB's TTL
// to delete: expiry is enforced on read, and the grace lets operators see
// recently expired records (opsctl keys ls --expired) and purge them.
const TTLGrace = time.Hour

// ttlSeconds is the value of the ttl attribute for a record expiring at exp.
func ttlSeconds(exp time.Time) int64 { return exp.Add(TTLGrace + time.Second - time.Nanosecond).Unix() }

const claimUpdate = "SET #m = :m, #k = :k, #st = :ip, #tok = :tok, #lease = :lease, " +
	"#fp = if_not_exists(#fp, :fp), #rid = if_not_exists(#rid, :rid), #ct = if_not_exists(#ct, :now), " +
	"#exp = if_not_exists(#exp, :exp), #ttl = if_not_exists(#ttl, :ttl)"

const claimCond = "attribute_not_exists(#pk) OR (#st = :ip AND #fp = :fp AND #lease <= :now AND #exp > :now)"

const replaceCond = "attribute_not_exists(#pk) OR #exp <= :now"

// maxBeginAttempts bounds Begin's retries when the record changes between
// its conditional writes.
const maxBeginAttempts = 5

// Begin implements driver.Store.
func (s *Store) Begin(ctx context.Context, r *driver.BeginRequest) (*driver.BeginResult, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := validateBegin(r); err != nil {
		return nil, err
	}
	p := pk(r.Merchant, r.Key)
	now := r.Now.UnixMilli()
	lease := r.Now.Add(r.Lease).UnixMilli()
	exp := r.Now.Add(r.TTL)
	fresh := &driver.Record{Merchant: r.Merchant, Key: r.Key, Fingerprint: r.Fingerprint, State: driver.StateInProgress,
		Token: r.Token, ResourceID: r.ResourceID, LeaseExpiresAt: time.UnixMilli(lease),
		CreatedAt: time.UnixMilli(now), ExpiresAt: time.UnixMilli(exp.UnixMilli())}
	vals := map[string]types.AttributeValue{
		":m": sv(r.Merchant), ":k": sv(r.Key), ":ip": sv(string(driver.StateInProgress)), ":tok": sv(r.Token),
		":lease": nv(lease), ":fp": sv(r.Fingerprint), ":rid": sv(r.ResourceID), ":now": nv(now),
		":exp": nv(exp.UnixMilli()), ":ttl": nv(ttlSeconds(exp)),
	}
	claim := true // first try: claim a new key or take over a lapsed lease
	for range maxBeginAttempts {
		var (
			old map[string]types.AttributeValue
			err error
		)
		if claim {
			var out *dynamodb.UpdateItemOutput
			out, err = s.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName: s.table, Key: keyOf(p),
				UpdateExpression: aws.String(claimUpdate), ConditionExpression: aws.String(claimCond),
				ExpressionAttributeNames: namesFor(claimUpdate, claimCond), ExpressionAttributeValues: vals,
				ReturnValues: types.ReturnValueAllOld, ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			})
			if err == nil {
				if len(out.Attributes) == 0 {
					return &driver.BeginResult{Outcome: driver.Acquired, Record: fresh}, nil
				}
				rec, err := decode(out.Attributes)
				if err != nil {
					return nil, fmt.Errorf("dynamodb: begin: %w", err)
				}
				rec.Token, rec.LeaseExpiresAt = r.Token, time.UnixMilli(lease)
				return &driver.BeginResult{Outcome: driver.Reacquired, Record: rec}, nil
			}
		} else {
			item := map[string]types.AttributeValue{
				aPK: sv(p), aM: sv(r.Merchant), aK: sv(r.Key), aFP: sv(r.Fingerprint),
				aSt: vals[":ip"], aTok: sv(r.Token), aRID: sv(r.ResourceID), aLease: vals[":lease"],
				aCT: vals[":now"], aExp: vals[":exp"], aTTL: vals[":ttl"],
			}
			_, err = s.c.PutItem(ctx, &dynamodb.PutItemInput{
				TableName: s.table, Item: item, ConditionExpression: aws.String(replaceCond),
				ExpressionAttributeNames:            namesFor(replaceCond),
				ExpressionAttributeValues:           map[string]types.AttributeValue{":now": vals[":now"]},
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			})
			if err == nil {
				return &driver.BeginResult{Outcome: driver.Acquired, Record: fresh}, nil
			}
		}
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			return nil, s.fail(ctx, "begin", err)
		}
		old = ccf.Item
		if len(old) == 0 {
			claim = true // deleted meanwhile
			continue
		}
		rec, err := decode(old)
		if err != nil {
			return nil, fmt.Errorf("dynamodb: begin: %w", err)
		}
		switch {
		case rec.ExpiresAt.UnixMilli() <= now:
			claim = false // expired but not yet deleted by TTL: replace it
			continue
		case rec.Fingerprint != r.Fingerprint:
			return &driver.BeginResult{Outcome: driver.Mismatch, Record: rec}, nil
		case rec.State == driver.StateCompleted:
			if err := s.loadChunks(ctx, p, old, rec); err != nil {
				return nil, err
			}
			return &driver.BeginResult{Outcome: driver.Replay, Record: rec}, nil
		case rec.LeaseExpiresAt.UnixMilli() > now:
			return &driver.BeginResult{Outcome: driver.InProgress, Record: rec}, nil
		}
		claim = true // the lease lapsed meanwhile: take it over
	}
	return nil, fmt.Errorf("dynamodb: begin %s/%s: no result after %d attempts under contention", r.Merchant, r.Key, maxBeginAttempts)
}

func attrS(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func attrN(item map[string]types.AttributeValue, name string) (int64, bool) {
	v, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	return n, err == nil
}

// decode builds a record from an item (its body chunks are not loaded).
func decode(item map[string]types.AttributeValue) (*driver.Record, error) {
	rec := &driver.Record{Merchant: attrS(item, aM), Key: attrS(item, aK), Fingerprint: attrS(item, aFP),
		State: driver.State(attrS(item, aSt)), Token: attrS(item, aTok), ResourceID: attrS(item, aRID)}
	lease, ok1 := attrN(item, aLease)
	ct, ok2 := attrN(item, aCT)
	exp, ok3 := attrN(item, aExp)
	if !ok1 || !ok2 || !ok3 || rec.State == "" {
		return nil, fmt.Errorf("corrupt item %q", attrS(item, aPK))
	}
	rec.LeaseExpiresAt, rec.CreatedAt, rec.ExpiresAt = time.UnixMilli(lease), time.UnixMilli(ct), time.UnixMilli(exp)
	if rec.State == driver.StateCompleted {
		sc, _ := attrN(item, aSC)
		rec.Response = &driver.Response{StatusCode: int(sc)}
		if m, ok := item[aHd].(*types.AttributeValueMemberM); ok && len(m.Value) > 0 {
			rec.Response.Header = make(map[string]string, len(m.Value))
			for k, v := range m.Value {
				if s, ok := v.(*types.AttributeValueMemberS); ok {
					rec.Response.Header[k] = s.Value
				}
			}
		}
		if b, ok := item[aBody].(*types.AttributeValueMemberB); ok {
			rec.Response.Body = b.Value
		}
	}
	return rec, nil
}

// loadChunks reads the body chunks of a completed record stored in chunks.
func (s *Store) loadChunks(ctx context.Context, recPK string, item map[string]types.AttributeValue, rec *driver.Record) error {
	n, _ := attrN(item, aChunks)
	if n <= 0 || rec.Response == nil {
		return nil
	}
	gen := attrS(item, aGen)
	keys := make([]map[string]types.AttributeValue, n)
	for i := range keys {
		keys[i] = keyOf(chunkPK(recPK, gen, i))
	}
	parts := make(map[string][]byte, n)
	req := map[string]types.KeysAndAttributes{*s.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
	for attempt := 0; len(req) > 0; attempt++ {
		if attempt > 10 {
			return fmt.Errorf("dynamodb: reading body chunks of %q: still unprocessed after %d attempts", recPK, attempt)
		}
		out, err := s.c.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return s.fail(ctx, "read body chunks", err)
		}
		for _, it := range out.Responses[*s.table] {
			if b, ok := it[aBody].(*types.AttributeValueMemberB); ok {
				parts[attrS(it, aPK)] = b.Value
			}
		}
		req = out.UnprocessedKeys
	}
	var body []byte
	for i := range int(n) {
		part, ok := parts[chunkPK(recPK, gen, i)]
		if !ok {
			return fmt.Errorf("dynamodb: body chunk %d of %q missing", i, recPK)
		}
		body = append(body, part...)
	}
	rec.Response.Body = body
	return nil
}

const completeUpdateBase = "SET #st = :c, #tok = :empty, #sc = :sc, #exp = :exp, #ttl = :ttl"

const ownedCond = "#st = :ip AND #tok = :tok"

// Complete implements driver.Store.
func (s *Store) Complete(ctx context.Context, r driver.CompleteRequest) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	resp := r.Response
	if resp == nil {
		resp = &driver.Response{}
	}
	if len(resp.Body) > MaxBodyBytes {
		return fmt.Errorf("%w: %d bytes, the most is %d", ErrBodyTooLarge, len(resp.Body), MaxBodyBytes)
	}
	if err := validateHeaders(resp.Header); err != nil {
		return err
	}
	if !storable(r.Merchant, r.Key, r.Token) {
		return driver.ErrLeaseLost
	}
	p := pk(r.Merchant, r.Key)
	exp := r.Now.Add(r.TTL)
	update := completeUpdateBase
	vals := map[string]types.AttributeValue{
		":c": sv(string(driver.StateCompleted)), ":empty": sv(""), ":sc": nv(int64(resp.StatusCode)),
		":exp": nv(exp.UnixMilli()), ":ttl": nv(ttlSeconds(exp)), ":ip": sv(string(driver.StateInProgress)), ":tok": sv(r.Token),
	}
	if len(resp.Header) > 0 {
		m := make(map[string]types.AttributeValue, len(resp.Header))
		for k, v := range resp.Header {
			m[k] = sv(v)
		}
		update += ", #hd = :hd"
		vals[":hd"] = &types.AttributeValueMemberM{Value: m}
	}
	if len(resp.Body) <= InlineBodyMax {
		if len(resp.Body) > 0 {
			update += ", #body = :body"
			vals[":body"] = &types.AttributeValueMemberB{Value: resp.Body}
		}
		_, err := s.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: s.table, Key: keyOf(p), UpdateExpression: aws.String(update),
			ConditionExpression: aws.String(ownedCond), ExpressionAttributeNames: namesFor(update, ownedCond),
			ExpressionAttributeValues: vals,
		})
		return s.condResult(ctx, "complete", err)
	}
	// Large body: the record and its chunks in one transaction.
	gen := randomGen()
	n := (len(resp.Body) + chunkSize - 1) / chunkSize
	update += ", #chunks = :chunks, #gen = :gen"
	vals[":chunks"] = nv(int64(n))
	vals[":gen"] = sv(gen)
	items := []types.TransactWriteItem{{Update: &types.Update{
		TableName: s.table, Key: keyOf(p), UpdateExpression: aws.String(update),
		ConditionExpression: aws.String(ownedCond), ExpressionAttributeNames: namesFor(update, ownedCond),
		ExpressionAttributeValues: vals,
	}}}
	for i := range n {
		part := resp.Body[i*chunkSize : min((i+1)*chunkSize, len(resp.Body))]
		items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: s.table, Item: map[string]types.AttributeValue{
			aPK: sv(chunkPK(p, gen, i)), aBody: &types.AttributeValueMemberB{Value: part}, aTTL: vals[":ttl"],
		}}})
	}
	_, err := s.c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	var tc *types.TransactionCanceledException
	if errors.As(err, &tc) && len(tc.CancellationReasons) > 0 && aws.ToString(tc.CancellationReasons[0].Code) == "ConditionalCheckFailed" {
		return driver.ErrLeaseLost
	}
	if err != nil {
		return s.fail(ctx, "complete", err)
	}
	return nil
}

func randomGen() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Store) condResult(ctx context.Context, op string, err error) error {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return driver.ErrLeaseLost
	}
	if err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// Extend implements driver.Store.
func (s *Store) Extend(ctx context.Context, r driver.ExtendRequest) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if !storable(r.Merchant, r.Key, r.Token) {
		return driver.ErrLeaseLost
	}
	const update = "SET #lease = :lease"
	_, err := s.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: s.table, Key: keyOf(pk(r.Merchant, r.Key)), UpdateExpression: aws.String(update),
		ConditionExpression: aws.String(ownedCond), ExpressionAttributeNames: namesFor(update, ownedCond),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":lease": nv(r.Now.Add(r.Lease).UnixMilli()), ":ip": sv(string(driver.StateInProgress)), ":tok": sv(r.Token)},
	})
	return s.condResult(ctx, "extend", err)
}

// Release implements driver.Store.
func (s *Store) Release(ctx context.Context, merchant, key, token string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if !storable(merchant, key, token) {
		return driver.ErrLeaseLost
	}
	_, err := s.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: s.table, Key: keyOf(pk(merchant, key)),
		ConditionExpression: aws.String(ownedCond), ExpressionAttributeNames: namesFor(ownedCond),
		ExpressionAttributeValues: map[string]types.AttributeValue{":ip": sv(string(driver.StateInProgress)), ":tok": sv(token)},
	})
	return s.condResult(ctx, "release", err)
}

// Delete implements driver.Admin: it deletes the record only if its state,
// token and expiry are still those of r. Body chunks of a deleted record
// are left to DynamoDB's TTL.
func (s *Store) Delete(ctx context.Context, r *driver.Record) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if !storable(r.Merchant, r.Key, r.Token) {
		return driver.ErrLeaseLost
	}
	const cond = "#st = :st AND #tok = :tok AND #exp = :exp"
	_, err := s.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: s.table, Key: keyOf(pk(r.Merchant, r.Key)),
		ConditionExpression: aws.String(cond), ExpressionAttributeNames: namesFor(cond),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":st": sv(string(r.State)), ":tok": sv(r.Token), ":exp": nv(r.ExpiresAt.UnixMilli())},
	})
	return s.condResult(ctx, "delete", err)
}

// Get implements driver.Admin (a strongly consistent read).
func (s *Store) Get(ctx context.Context, merchant, key string) (*driver.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if !storable(merchant, key, "") {
		return nil, driver.ErrNotFound
	}
	p := pk(merchant, key)
	out, err := s.c.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table, Key: keyOf(p), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	if len(out.Item) == 0 {
		return nil, driver.ErrNotFound
	}
	rec, err := decode(out.Item)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: get: %w", err)
	}
	if err := s.loadChunks(ctx, p, out.Item, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// DefaultListLimit is List's page size when the filter sets none.
const DefaultListLimit = 100

// List implements driver.Admin. DynamoDB keeps no order across partition
// keys, so List scans the table (strongly consistent, filtered on the
// server), sorts and pages in the client: its cost grows with the table,
// which suits operations tooling, not request paths.
func (s *Store) List(ctx context.Context, f driver.Filter) ([]*driver.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	filter := "attribute_exists(#st)"
	vals := map[string]types.AttributeValue{}
	if f.Merchant != "" {
		filter += " AND #m = :m"
		vals[":m"] = sv(f.Merchant)
	}
	if f.State != "" {
		filter += " AND #st = :st"
		vals[":st"] = sv(string(f.State))
	}
	in := &dynamodb.ScanInput{TableName: s.table, ConsistentRead: aws.Bool(true), FilterExpression: aws.String(filter),
		ExpressionAttributeNames: namesFor(filter)}
	if len(vals) > 0 {
		in.ExpressionAttributeValues = vals
	}
	type found struct {
		rec  *driver.Record
		item map[string]types.AttributeValue
	}
	var all []found
	for page := dynamodb.NewScanPaginator(s.c, in); page.HasMorePages(); {
		out, err := page.NextPage(ctx)
		if err != nil {
			return nil, s.fail(ctx, "list", err)
		}
		for _, it := range out.Items {
			rec, err := decode(it)
			if err != nil {
				return nil, fmt.Errorf("dynamodb: list: %w", err)
			}
			if (f.AfterMerchant != "" || f.AfterKey != "") &&
				(rec.Merchant < f.AfterMerchant || rec.Merchant == f.AfterMerchant && rec.Key <= f.AfterKey) {
				continue
			}
			all = append(all, found{rec, it})
		}
	}
	slices.SortFunc(all, func(a, b found) int {
		if c := strings.Compare(a.rec.Merchant, b.rec.Merchant); c != 0 {
			return c
		}
		return strings.Compare(a.rec.Key, b.rec.Key)
	})
	if len(all) > limit {
		all = all[:limit]
	}
	out := make([]*driver.Record, len(all))
	for i, fd := range all {
		if err := s.loadChunks(ctx, pk(fd.rec.Merchant, fd.rec.Key), fd.item, fd.rec); err != nil {
			return nil, err
		}
		out[i] = fd.rec
	}
	return out, nil
}

// Ping implements driver.Pinger: it describes the table.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := s.c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: s.table}); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close implements driver.Store. The SDK client holds no resources that
// need closing; later calls return ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return driver.ErrClosed
	}
	return nil
}
