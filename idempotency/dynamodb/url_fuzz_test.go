package dynamodb

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/urlcheck"
)

// errWouldCall stands for OpenURL's result on a URL it would describe the
// table of: the fuzz target never calls AWS.
var errWouldCall = errors.New("valid URL: OpenURL would call DynamoDB")

// FuzzParseURL: a dynamodb:// URL is either refused (by parseURL, or by
// New's check of the table name, both before any AWS call) with an error
// that reveals none of its secrets, or parsed into the table, region and
// endpoint it gives (the last value of each parameter wins); credentials
// in the userinfo, which the driver would ignore, are refused.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		var p urlParams
		err = urlcheck.NoLeak(t, raw, urlcheck.Parsed(t, func(u *url.URL) (err error) {
			if p, err = parseURL(u); err != nil {
				return err
			}
			if tableRE.MatchString(p.table) {
				return errWouldCall
			}
			_, err = New(context.Background(), nil, p.table)
			if err == nil {
				t.Fatalf("New accepted the table name %q", p.table)
			}
			return err
		}))
		if err == nil || !strings.HasPrefix(err.Error(), "dynamodb: ") && err != errWouldCall {
			t.Fatalf("OpenURL(%q): %v", raw, err)
		}
		if err != errWouldCall {
			return
		}
		want := u.Host
		if want == "" {
			want = strings.Trim(u.Path, "/")
		}
		last := func(k string) *string {
			if vs := u.Query()[k]; len(vs) > 0 {
				return &vs[len(vs)-1]
			}
			return nil
		}
		if p.table != want || u.User != nil || !same(p.region, last("region")) || !same(p.endpoint, last("endpoint")) {
			t.Fatalf("parseURL(%q) = %+v", raw, p)
		}
	})
}

func same(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
