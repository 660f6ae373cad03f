package payments

import (
	"testing"
)

func TestLookupCurrencyKnown(t *testing.T) {
	tests := []struct {
		code       string
		number     int
		minorUnits int
		name       string
	}{
		{"EUR", 978, 2, "Euro"},
		{"USD", 840, 2, "US Dollar"},
		{"JPY", 392, 0, "Yen"},
		{"KWD", 414, 3, "Kuwaiti Dinar"},
		{"CLF", 990, 4, "Unidad de Fomento"},
		{"UYW", 927, 4, "Unidad Previsional"},
		{"XCG", 532, 2, "Caribbean Guilder"},
		{"ZWG", 924, 2, "Zimbabwe Gold"}, // also the last entry
		{"SLE", 925, 2, "Leone"},
		{"VED", 926, 2, "Bolívar Soberano"},
		{"VES", 928, 2, "Bolívar Soberano"},
		{"MRU", 929, 2, "Ouguiya"},
		{"STN", 930, 2, "Dobra"},
		{"XAD", 396, 2, "Arab Accounting Dinar"},
		{"ALL", 8, 2, "Lek"},
		{"BHD", 48, 3, "Bahraini Dinar"},
		{"UYI", 940, 0, "Uruguay Peso en Unidades Indexadas (UI)"},
		{"USN", 997, 2, "US Dollar (Next day)"},
		{"XOF", 952, 0, "CFA Franc BCEAO"},
		{"AED", 784, 2, "UAE Dirham"}, // first entry
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			c, ok := LookupCurrency(tt.code)
			if !ok {
				t.Fatalf("LookupCurrency(%q) ok = false, want true", tt.code)
			}
			want := Currency{Code: tt.code, Number: tt.number, MinorUnits: tt.minorUnits, Name: tt.name}
			if c != want {
				t.Errorf("LookupCurrency(%q) = %+v, want %+v", tt.code, c, want)
			}
		})
	}
}

func TestLookupCurrencyMinorUnitGroups(t *testing.T) {
	groups := map[int][]string{
		0: {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"},
		3: {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"},
		4: {"CLF", "UYW"},
	}
	want := map[string]int{}
	for mu, codes := range groups {
		for _, code := range codes {
			want[code] = mu
			c, ok := LookupCurrency(code)
			if !ok || c.MinorUnits != mu {
				t.Errorf("LookupCurrency(%q) = %+v, %v; want MinorUnits %d", code, c, ok, mu)
			}
		}
	}
	// Every other supported currency has two decimals.
	for _, c := range Currencies() {
		if _, special := want[c.Code]; !special && c.MinorUnits != 2 {
			t.Errorf("%s: MinorUnits = %d, want 2 (or add it to the special groups)", c.Code, c.MinorUnits)
		}
	}
}

func TestLookupCurrencyUnsupported(t *testing.T) {
	for _, code := range []string{
		// minor unit "N.A." in list one
		"XAU", "XAG", "XPD", "XPT", "XXX", "XTS", "XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD",
		// withdrawn (list three)
		"HRK", "ZWL", "VEF", "MRO", "STD", "SLL", "ANG", "BGN", "CUC", "LTL", "DEM", "BYR",
		// malformed
		"eur", "Eur", "EUr", "", "EU", "E", "EURO", "EUR ", " EUR", "US$", "123", "\x00\x00\x00",
		"\xff\xff\xff", "ÉUR", "[[[", "@@@", "AAA", "ZZZ", "QQQ",
	} {
		if c, ok := LookupCurrency(code); ok || c != (Currency{}) {
			t.Errorf("LookupCurrency(%q) = %+v, %v; want zero Currency, false", code, c, ok)
		}
	}
}

func TestCurrenciesTable(t *testing.T) {
	all := Currencies()
	// ISO 4217 list one (Pblshd 2026-01-01) has 178 codes, 13 of which have minor unit N.A.
	if got, want := len(all), 165; got != want {
		t.Errorf("len(Currencies()) = %d, want %d", got, want)
	}
	codes := make(map[string]bool, len(all))
	numbers := make(map[int]string, len(all))
	for i, c := range all {
		if len(c.Code) != 3 || !currencyCodeIsUpper(c.Code) {
			t.Errorf("entry %d: code %q is not three upper-case letters", i, c.Code)
		}
		if c.MinorUnits < 0 || c.MinorUnits > 4 {
			t.Errorf("%s: MinorUnits = %d, want 0..4", c.Code, c.MinorUnits)
		}
		if c.Number <= 0 || c.Number > 999 {
			t.Errorf("%s: Number = %d, want 1..999", c.Code, c.Number)
		}
		if c.Name == "" {
			t.Errorf("%s: empty Name", c.Code)
		}
		if codes[c.Code] {
			t.Errorf("duplicate code %s", c.Code)
		}
		codes[c.Code] = true
		if other, dup := numbers[c.Number]; dup {
			t.Errorf("numeric code %03d used by both %s and %s", c.Number, other, c.Code)
		}
		numbers[c.Number] = c.Code
		if i > 0 && all[i-1].Code >= c.Code {
			t.Errorf("not sorted: %s at %d follows %s", c.Code, i, all[i-1].Code)
		}
		if got, ok := LookupCurrency(c.Code); !ok || got != c {
			t.Errorf("LookupCurrency(%q) = %+v, %v; want %+v, true", c.Code, got, ok, c)
		}
	}
}

func TestCurrenciesReturnsCopy(t *testing.T) {
	a := Currencies()
	a[0].Code, a[0].MinorUnits = "ZZZ", 9
	b := Currencies()
	if b[0].Code == "ZZZ" || b[0].MinorUnits == 9 {
		t.Fatalf("mutating the result of Currencies() changed the table: %+v", b[0])
	}
	if c, ok := LookupCurrency(b[0].Code); !ok || c != b[0] {
		t.Fatalf("LookupCurrency(%q) = %+v, %v after mutation", b[0].Code, c, ok)
	}
}

func TestLookupCurrencyDoesNotAllocate(t *testing.T) {
	codes := []string{"EUR", "JPY", "XAU", "eur", "", "EURO"}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, code := range codes {
			currencyBenchSink, currencyBenchOK = LookupCurrency(code)
		}
	})
	if allocs != 0 {
		t.Errorf("LookupCurrency allocates %v times per run, want 0", allocs)
	}
}

var (
	currencyBenchSink Currency
	currencyBenchOK   bool
)

func BenchmarkLookupCurrency(b *testing.B) {
	codes := []string{"EUR", "USD", "JPY", "KWD", "XCG", "ZWG", "XAU", "HRK", "eur", "EURO"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		currencyBenchSink, currencyBenchOK = LookupCurrency(codes[i%len(codes)])
	}
}

func currencyCodeIsUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
