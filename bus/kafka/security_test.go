package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/kafka"
)

// TestSASL authenticates with each supported mechanism against a kfake
// cluster that requires SASL, and checks that a wrong password fails
// without leaking the password.
func TestSASL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.GroupMinSessionTimeout(100*time.Millisecond),
		kfake.Superuser("PLAIN", "plainuser", "plain-secret"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "s256-secret"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "s512-secret"),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	for _, m := range []struct{ mech, user, pass string }{
		{"plain", "plainuser", "plain-secret"},
		{"scram-sha-256", "scram256", "s256-secret"},
		{"scram-sha-512", "scram512", "s512-secret"},
	} {
		t.Run(m.mech, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			topicName := "sasl-" + m.mech
			u := "kafka://" + m.user + ":" + m.pass + "@" + addr + "/" + topicName + "?sasl=" + m.mech
			if err := kafka.EnsureTopic(ctx, u, kafka.WithPartitions(1)); err != nil {
				t.Fatalf("EnsureTopic: %v", err)
			}
			topic, err := bus.OpenTopic(ctx, u)
			if err != nil {
				t.Fatalf("OpenTopic: %v", err)
			}
			defer topic.Close()
			if err := topic.Publish(ctx, &bus.Message{Body: []byte("authenticated")}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			sub, err := bus.OpenSubscription(ctx, u+"&group=g&"+groupParams)
			if err != nil {
				t.Fatalf("OpenSubscription: %v", err)
			}
			defer sub.Close()
			got := make(chan string, 1)
			rctx, stop := context.WithCancel(ctx)
			defer stop()
			go func() {
				_ = sub.Receive(rctx, func(_ context.Context, m *bus.Message) error {
					select {
					case got <- string(m.Body):
					default:
					}
					return nil
				})
			}()
			select {
			case b := <-got:
				if b != "authenticated" {
					t.Fatalf("received %q", b)
				}
			case <-ctx.Done():
				t.Fatal("nothing received over SASL")
			}

			bad := "kafka://" + m.user + ":wrong-password@" + addr + "/" + topicName + "?sasl=" + m.mech + "&dial_timeout=2s"
			// kfake drops the connection on a failed authentication instead
			// of answering SASL_AUTHENTICATION_FAILED (which classify maps
			// to bus.ErrPermission, see TestClassify), so only the failure
			// itself is checked here.
			_, err = bus.OpenTopic(ctx, bad)
			if err == nil {
				t.Fatal("OpenTopic with a wrong password succeeded")
			}
			if strings.Contains(err.Error(), "wrong-password") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// TestTLS connects over TLS, verifying the broker with a CA file given in
// the URL; without the CA the connection is refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, serverCfg := testCertificates(t, dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverCfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(c.ListenAddrs()[0])
	addr := "localhost:" + port
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	u := "kafka://" + addr + "/tls-topic?tls=true&tls_ca=" + caFile
	if err := kafka.EnsureTopic(ctx, u, kafka.WithPartitions(1)); err != nil {
		t.Fatalf("EnsureTopic over TLS: %v", err)
	}
	topic, err := bus.OpenTopic(ctx, u)
	if err != nil {
		t.Fatalf("OpenTopic over TLS: %v", err)
	}
	defer topic.Close()
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("encrypted")}); err != nil {
		t.Fatalf("Publish over TLS: %v", err)
	}
	// The system roots do not know the test CA.
	if _, err := bus.OpenTopic(ctx, "kafka://"+addr+"/tls-topic?tls=true&dial_timeout=2s"); err == nil {
		t.Fatal("OpenTopic trusted a broker certificate signed by an unknown CA")
	}
}

// testCertificates writes a CA certificate to dir and returns its path and
// a server TLS config with a certificate for localhost signed by it.
func testCertificates(t *testing.T, dir string) (string, *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "payrail test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
