package urlcheck

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestSecrets(t *testing.T) {
	cases := map[string][]string{
		"kafka://u:pw12@h:9092/t":                         {"pw12"},
		"kafka://u:p%41ss@h/t":                            {"p%41ss", "pAss"},
		"x://h/p?api_key=abc&x=1&token=t%2Bk":             {"abc", "t%2Bk", "t+k"},
		"x://h?connection_string=E%3Dk&Password=pp":       {"E%3Dk", "E=k", "pp"},
		"x://h#frag?token=notaquery":                      nil,
		"x://u@h?key=":                                    nil,
		"x://u:@h":                                        nil,
		"x://a:b@c@host/?sasl=scram&client_id=secret-ish": {"b@c"},
		"not a url at all":                                nil,
	}
	for raw, want := range cases {
		if got := Secrets(raw); !slices.Equal(got, want) {
			t.Errorf("Secrets(%q) = %q; want %q", raw, got, want)
		}
	}
}

func TestWithMarkersKeepsTheURLParseable(t *testing.T) {
	raw := "kafka://user:p%zz@h:1/t?token=x%zz&a=b"
	marked, markers, ok := WithMarkers(raw)
	if !ok || len(markers) != 2 {
		t.Fatalf("WithMarkers(%q) = %q, %q, %v", raw, marked, markers, ok)
	}
	u, err := url.Parse(marked)
	if err != nil {
		t.Fatalf("%q: %v", marked, err)
	}
	if pw, _ := u.User.Password(); pw != markers[0] || u.Query().Get("token") != markers[1] || u.Query().Get("a") != "b" {
		t.Fatalf("markers not where the secrets were: %q", marked)
	}
}

// NoLeak catches an opener that echoes its URL, and does not blame one
// whose message merely contains the secret's text by itself.
func TestNoLeak(t *testing.T) {
	leaky := func(raw string) error { return fmt.Errorf("cannot open %s", raw) }
	ft := &fakeT{}
	func() {
		defer func() { _ = recover() }()
		NoLeak(ft, "x://u:hunter2@h", leaky)
	}()
	if !ft.failed {
		t.Error("an error echoing the password was not reported")
	}
	template := func(string) error { return errors.New("the topic name is missing") }
	if err := NoLeak(t, "x://u:topic@h", template); err == nil || !strings.Contains(err.Error(), "topic") {
		t.Errorf("NoLeak returned %v", err)
	}
}

// fakeT records a Fatalf instead of ending the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}
