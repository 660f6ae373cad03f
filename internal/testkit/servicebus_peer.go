package testkit

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// sbpeerSource is the Service Bus test peer, a Python program on Qpid
// Proton; see sbpeer/sbpeer.py for what it implements and the Microsoft
// documentation each behaviour follows.
//
//go:embed sbpeer/sbpeer.py
var sbpeerSource string

// ErrServiceBusPeerNotInstalled is returned by StartServiceBusPeer when
// Python 3 or its Qpid Proton binding (Debian's python3-qpid-proton,
// installed by .ci/setup.d/bus-servicebus-peer.sh) is missing.
var ErrServiceBusPeerNotInstalled = errors.New("testkit: the Service Bus test peer needs /usr/bin/python3 with python3-qpid-proton (apt-get install -y python3-qpid-proton)")

// ServiceBusPeer is a running Service Bus test peer: an in-memory,
// Service Bus-compatible AMQP 1.0 endpoint for tests of the real
// azservicebus SDK (it is test infrastructure, not an emulator of the whole
// service). Entities are created and removed through its admin channel
// (CreateQueue, CreateTopic, CreateSubscription, Delete). Typical use, from a
// test package's TestMain:
//
//	var peer *testkit.ServiceBusPeer
//	var peerErr error
//
//	func TestMain(m *testing.M) {
//		peer, peerErr = testkit.StartServiceBusPeer()
//		code := m.Run()
//		peer.Stop()
//		os.Exit(code)
//	}
//
// and in each test: testkit.StoreRequirePeer(t, "Service Bus test peer", peerErr),
// which skips locally and fails under CI=true.
type ServiceBusPeer struct {
	// Port is the loopback port the peer listens on (plain AMQP, no TLS).
	Port int
	// ConnectionString connects the azservicebus SDK to the peer, in its
	// development-emulator form (TLS off, port from the endpoint).
	ConnectionString string
	// ATOMPort is the loopback port of the peer's administration endpoint
	// (the ATOM protocol of the SDK's admin.Client, over plain HTTP); see
	// AdminTransport.
	ATOMPort int

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
	stderr *tailBuffer

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan map[string]any
	dead    error
	once    sync.Once
}

// ServiceBusEntity configures a queue or subscription created on the peer.
// Zero values take the service's defaults: a 60 s lock duration and a
// maximum delivery count of 10.
type ServiceBusEntity struct {
	// LockDuration is the peek-lock duration (the service allows 5 s to
	// 5 min; the peer accepts any positive value, for fast tests).
	LockDuration time.Duration
	// MaxDeliveryCount is the delivery count at which the peer
	// dead-letters a message with reason MaxDeliveryCountExceeded.
	MaxDeliveryCount int
	// RequiresSession makes the entity sessionful.
	RequiresSession bool
}

// ServiceBusCounts are the message counts of a queue or subscription.
type ServiceBusCounts struct {
	Active      int `json:"active"`
	Locked      int `json:"locked"`
	Scheduled   int `json:"scheduled"`
	DeadLetters int `json:"dead_letters"`
}

// StartServiceBusPeer starts the peer on a free loopback port and waits
// until it listens (within 30 s). The peer's interpreter is /usr/bin/python3,
// or SERVICEBUS_PEER_PYTHON; with SERVICEBUS_PEER_VERBOSE=1 it logs to
// stderr. It exits when Stop is called or when the test binary dies.
func StartServiceBusPeer() (*ServiceBusPeer, error) {
	py := os.Getenv("SERVICEBUS_PEER_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if _, err := os.Stat(py); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrServiceBusPeerNotInstalled, err)
	}
	if out, err := exec.Command(py, "-c", "import proton").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrServiceBusPeerNotInstalled, bytes.TrimSpace(out))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testkit: finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	args := []string{"-c", sbpeerSource, "--port", strconv.Itoa(port)}
	if os.Getenv("SERVICEBUS_PEER_VERBOSE") != "" {
		args = append(args, "--verbose")
	}
	cmd := exec.Command(py, args...)
	// Killed with the test binary even if it dies without calling Stop
	// (the peer also exits when its stdin closes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	p := &ServiceBusPeer{
		Port: port,
		ConnectionString: fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true",
			port),
		cmd:     cmd,
		exited:  make(chan struct{}),
		stderr:  &tailBuffer{max: 16 << 10},
		waiting: map[int]chan map[string]any{},
	}
	if os.Getenv("SERVICEBUS_PEER_VERBOSE") != "" {
		cmd.Stderr = io.MultiWriter(os.Stderr, p.stderr)
	} else {
		cmd.Stderr = p.stderr
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testkit: start the Service Bus peer: %w", err)
	}
	ready := make(chan struct{})
	go p.readAnswers(stdout, ready)
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		if p.dead == nil {
			p.dead = fmt.Errorf("testkit: the Service Bus peer exited: %v; stderr: %s", err, p.stderr.String())
		}
		for id, ch := range p.waiting {
			close(ch)
			delete(p.waiting, id)
		}
		p.mu.Unlock()
		close(p.exited)
	}()
	select {
	case <-ready:
		return p, nil
	case <-p.exited:
		return nil, p.err()
	case <-time.After(30 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("testkit: the Service Bus peer did not start within 30s; stderr: %s", p.stderr.String())
	}
}

func (p *ServiceBusPeer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead != nil {
		return p.dead
	}
	return errors.New("testkit: the Service Bus peer stopped")
}

func (p *ServiceBusPeer) readAnswers(r io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	readyOnce := sync.Once{}
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		if m["ready"] == true {
			if port, ok := m["atom_port"].(float64); ok {
				p.ATOMPort = int(port)
			}
			readyOnce.Do(func() { close(ready) })
			continue
		}
		id, _ := m["id"].(float64)
		p.mu.Lock()
		ch := p.waiting[int(id)]
		delete(p.waiting, int(id))
		p.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// admin sends one admin command and waits for its answer.
func (p *ServiceBusPeer) admin(ctx context.Context, cmd map[string]any) (map[string]any, error) {
	if p == nil {
		return nil, errors.New("testkit: no Service Bus peer")
	}
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return nil, p.dead
	}
	p.nextID++
	id := p.nextID
	ch := make(chan map[string]any, 1)
	p.waiting[id] = ch
	cmd["id"] = id
	b, _ := json.Marshal(cmd)
	_, err := p.stdin.Write(append(b, '\n'))
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("testkit: Service Bus peer admin: %w", err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, p.err()
		}
		if e, _ := m["error"].(string); e != "" {
			return nil, fmt.Errorf("testkit: Service Bus peer: %s", e)
		}
		return m, nil
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.waiting, id)
		p.mu.Unlock()
		return nil, ctx.Err()
	}
}

func entityCmd(op, name string, e ServiceBusEntity) map[string]any {
	return map[string]any{
		"op":                 op,
		"name":               name,
		"lock_duration_ms":   e.LockDuration.Milliseconds(),
		"max_delivery_count": e.MaxDeliveryCount,
		"requires_session":   e.RequiresSession,
	}
}

// CreateQueue creates a queue (names are case-insensitive, as on the service).
func (p *ServiceBusPeer) CreateQueue(ctx context.Context, name string, e ServiceBusEntity) error {
	_, err := p.admin(ctx, entityCmd("create_queue", name, e))
	return err
}

// CreateTopic creates a topic.
func (p *ServiceBusPeer) CreateTopic(ctx context.Context, name string) error {
	_, err := p.admin(ctx, map[string]any{"op": "create_topic", "name": name})
	return err
}

// CreateSubscription creates a subscription of topic; it receives a copy of
// every message sent to the topic after it exists.
func (p *ServiceBusPeer) CreateSubscription(ctx context.Context, topic, name string, e ServiceBusEntity) error {
	cmd := entityCmd("create_subscription", name, e)
	cmd["topic"] = topic
	_, err := p.admin(ctx, cmd)
	return err
}

// Delete removes a queue, a topic (with its subscriptions) or a
// subscription ("<topic>/Subscriptions/<name>"), detaching its links.
func (p *ServiceBusPeer) Delete(ctx context.Context, path string) error {
	_, err := p.admin(ctx, map[string]any{"op": "delete", "path": path})
	return err
}

// Counts reads a queue's or subscription's message counts ("<queue>" or
// "<topic>/Subscriptions/<name>").
func (p *ServiceBusPeer) Counts(ctx context.Context, path string) (ServiceBusCounts, error) {
	m, err := p.admin(ctx, map[string]any{"op": "counts", "path": path})
	if err != nil {
		return ServiceBusCounts{}, err
	}
	b, _ := json.Marshal(m)
	var c ServiceBusCounts
	err = json.Unmarshal(b, &c)
	return c, err
}

// Stop stops the peer and waits for it to exit. It is safe on a nil peer
// and when called twice.
func (p *ServiceBusPeer) Stop() {
	if p == nil || p.cmd == nil {
		return
	}
	p.once.Do(func() {
		_ = p.stdin.Close() // the peer exits when its stdin closes
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			if p.cmd.Process != nil {
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
			<-p.exited
		}
	})
}

// DropConnections closes every client connection with
// amqp:connection:forced, as a service update or a gateway failover does,
// and returns how many it closed. Clients reconnect on their own.
func (p *ServiceBusPeer) DropConnections(ctx context.Context) (int, error) {
	m, err := p.admin(ctx, map[string]any{"op": "drop_connections"})
	if err != nil {
		return 0, err
	}
	n, _ := m["dropped"].(float64)
	return int(n), nil
}

// Log returns the tail of what the peer wrote to stderr: its own
// diagnostics (connection and transport errors are always written, the
// rest with SERVICEBUS_PEER_VERBOSE=1). Tests print it when they fail.
func (p *ServiceBusPeer) Log() string {
	if p == nil || p.stderr == nil {
		return ""
	}
	return p.stderr.String()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// AdminTransport returns an HTTP transport for the SDK's admin.Client
// (set it as the Transport of its azcore.ClientOptions): it sends every
// request, which the client addresses to https://<namespace>/, to the
// peer's administration endpoint over plain HTTP instead.
func (p *ServiceBusPeer) AdminTransport() interface {
	Do(*http.Request) (*http.Response, error)
} {
	return atomTransport{port: p.ATOMPort}
}

type atomTransport struct{ port int }

func (t atomTransport) Do(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host = "http", fmt.Sprintf("127.0.0.1:%d", t.port)
	return http.DefaultTransport.RoundTrip(r)
}
