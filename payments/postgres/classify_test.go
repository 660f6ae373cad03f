package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

// TestFailClassifiesServerErrors feeds fail the errors a real server
// returns: those caused by the values sent are ErrStoreInvalid, without
// the server's message (which may quote the value); the others are not.
func TestFailClassifiesServerErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	testkit.StoreRequirePeer(t, "PostgreSQL", err)
	defer conn.Close(context.Background())
	tmp := testkit.StoreUniqueName("classify_")
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE `+tmp+` (v text PRIMARY KEY, n varchar(3), u int UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	secret := "4242424242424242"
	// Varied text that does not compress below the index row limit.
	var big strings.Builder
	for i := range 3000 {
		big.WriteString(time.Duration(i * 7919).String())
	}
	run := func(sql string, args ...any) error {
		_, err := conn.Exec(ctx, sql, args...)
		if err == nil {
			t.Fatalf("%s succeeded", sql)
		}
		return err
	}
	s := &Store{table: tmp}
	invalid := map[string]error{
		"22021 NUL in text":             run(`INSERT INTO `+tmp+` (v) VALUES ($1)`, secret+"\x00"),
		"22021 invalid UTF-8":           run(`INSERT INTO `+tmp+` (v) VALUES ($1)`, secret+"\xff"),
		"22P05 \\u0000 in jsonb":        run(`SELECT $1::jsonb`, `{"pan":"`+secret+`\u0000"}`),
		"22001 string too long":         run(`INSERT INTO `+tmp+` (v, n) VALUES ('a', $1)`, secret),
		"22P02 invalid text for a type": run(`SELECT $1::text::int`, "x"+secret),
		"54000 index row too large":     run(`INSERT INTO `+tmp+` (v) VALUES ($1)`, big.String()),
	}
	for name, err := range invalid {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != strings.Fields(name)[0] {
			t.Fatalf("%s: the server answered %v", name, err)
		}
		got := s.fail(ctx, "create", err)
		if !errors.Is(got, payments.ErrStoreInvalid) {
			t.Errorf("%s: %v, want ErrStoreInvalid", name, got)
		}
		if strings.Contains(got.Error(), secret) {
			t.Errorf("%s: the error echoes the value: %v", name, got)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+tmp+` (v, u) VALUES ('x', 1)`); err != nil {
		t.Fatal(err)
	}
	unique := run(`INSERT INTO ` + tmp + ` (v, u) VALUES ('y', 1)`)
	if pe := (*pgconn.PgError)(nil); !errors.As(unique, &pe) || pe.Code != "23505" {
		t.Fatalf("duplicate insert: %v", unique)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	_, timeout := conn.Exec(short, `SELECT pg_sleep(5)`)
	_, refused := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	others := map[string]struct {
		ctx context.Context
		err error
	}{
		"23505 unique violation": {ctx, unique},
		"statement timeout":      {short, timeout},
		"connection refused":     {ctx, refused},
	}
	for name, c := range others {
		if c.err == nil {
			t.Fatalf("%s: no error", name)
		}
		if got := s.fail(c.ctx, "create", c.err); errors.Is(got, payments.ErrStoreInvalid) {
			t.Errorf("%s: %v classified as invalid input", name, got)
		}
	}
}

// TestValidateNamesTheField: a refused payment's error names the field and
// the reason, never the value.
func TestValidateNamesTheField(t *testing.T) {
	secret := "4242424242424242"
	base := func() *payments.Payment {
		return &payments.Payment{ID: "pay_1", Merchant: "acme", Currency: "EUR", Status: payments.StatusCaptured,
			Refunds: []payments.Refund{{ID: "re_1"}, {ID: "re_2"}}, Metadata: map[string]string{"order": "1"}}
	}
	cases := []struct {
		set  func(p *payments.Payment)
		want string
	}{
		{func(p *payments.Payment) { p.Refunds[1].GatewayReference = secret + "\xff" }, "refunds[1].gateway_reference is not valid UTF-8"},
		{func(p *payments.Payment) { p.Metadata = map[string]string{"note": secret + "\x00"} }, "a metadata value contains a NUL byte"},
		{func(p *payments.Payment) { p.ID = strings.Repeat(secret, 100) }, "id is longer than 1024 bytes"},
		{func(p *payments.Payment) { p.PaymentMethod = "\xed\xa0\x80" + secret }, "payment_method is not valid UTF-8"},
	}
	for _, c := range cases {
		p := base()
		c.set(p)
		err := validate(p)
		if !errors.Is(err, payments.ErrStoreInvalid) || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("validate: %v, want ErrStoreInvalid ending %q", err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("validate: the error echoes the value: %v", err)
		}
	}
	if err := validate(base()); err != nil {
		t.Errorf("validate of a clean payment: %v", err)
	}
}
