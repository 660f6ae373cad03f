package pubsub

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// streamingPullMethod is the RPC the client library receives through.
const streamingPullMethod = "/google.pubsub.v1.Subscriber/StreamingPull"

// streamDrainTimeout bounds how long StopReceiving waits for the server to
// end a half-closed stream before cutting it.
const streamDrainTimeout = time.Second

// streamGate sits between the client library and its StreamingPull
// streams, so that a stopping subscription can end them without stopping
// the library. The library offers no such step: stopping its Receive
// either keeps the streams open until every callback returned (the server
// goes on sending to a consumer that no longer reads, and what it sent
// stays leased until its ack deadline) or cuts them first, which fails its
// iterator and drops the acknowledgements of messages still being handled.
//
// close half-closes every stream: the server stops sending and ends the
// stream, the library reads what was already on the way (the subscription
// hands it back) and then sees an ordinary end of stream. The streams the
// library opens afterwards are parked: they deliver nothing and end with
// their context. Acknowledgements go over unary RPCs and keep working.
type streamGate struct {
	mu     sync.Mutex
	closed bool
	live   map[*gatedStream]struct{}
}

func newStreamGate() *streamGate {
	return &streamGate{live: map[*gatedStream]struct{}{}}
}

// dialOption installs the gate on the client's connection.
func (g *streamGate) dialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(g.intercept)
}

func (g *streamGate) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method != streamingPullMethod {
		return streamer(ctx, desc, cc, method, opts...)
	}
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return &parkedStream{ctx: ctx}, nil
	}
	sctx, cancel := context.WithCancel(ctx)
	cs, err := streamer(sctx, desc, cc, method, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &gatedStream{ClientStream: cs, cancel: cancel, ended: make(chan struct{})}
	context.AfterFunc(sctx, s.end)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		s.halfClose()
		s.cut()
		return s, nil
	}
	g.live[s] = struct{}{}
	g.mu.Unlock()
	return s, nil
}

// close half-closes every stream and waits until the server ended them,
// at most timeout; streams still open then are cut (what they still carried
// stays leased until its ack deadline). Streams opened later are parked.
func (g *streamGate) close(timeout time.Duration) {
	g.mu.Lock()
	g.closed = true
	live := make([]*gatedStream, 0, len(g.live))
	for s := range g.live {
		live = append(live, s)
	}
	clear(g.live)
	g.mu.Unlock()
	for _, s := range live {
		s.halfClose()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, s := range live {
		select {
		case <-s.ended:
		case <-deadline.C:
		}
		s.cut()
	}
}

// gatedStream is a StreamingPull stream the gate can half-close and cut.
type gatedStream struct {
	grpc.ClientStream
	cancel context.CancelFunc

	sendMu     sync.Mutex // the library's sends and the gate's half-close
	halfClosed bool

	endOnce sync.Once
	ended   chan struct{} // closed when the stream is over
	cutMu   sync.Mutex
	isCut   bool
}

func (s *gatedStream) end() { s.endOnce.Do(func() { close(s.ended) }) }

func (s *gatedStream) SendMsg(m any) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.halfClosed {
		return nil // a keep-alive after the half-close: nothing to say
	}
	return s.ClientStream.SendMsg(m)
}

func (s *gatedStream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.halfClosed {
		return nil
	}
	s.halfClosed = true
	return s.ClientStream.CloseSend()
}

func (s *gatedStream) halfClose() { _ = s.CloseSend() }

// cut ends the stream locally; the library then sees an end of stream.
func (s *gatedStream) cut() {
	s.cutMu.Lock()
	s.isCut = true
	s.cutMu.Unlock()
	s.cancel()
}

func (s *gatedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		return nil
	}
	s.end()
	s.cutMu.Lock()
	isCut := s.isCut
	s.cutMu.Unlock()
	if isCut && (status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled)) {
		// Cut by the gate, not by the library: an ordinary end of stream,
		// after which the library opens a (parked) stream again instead
		// of failing and dropping its pending acknowledgements.
		return io.EOF
	}
	return err
}

// parkedStream is the stream the library gets once the gate is closed: it
// accepts what the library sends and delivers nothing until its context
// ends.
type parkedStream struct{ ctx context.Context }

func (p *parkedStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (p *parkedStream) Trailer() metadata.MD         { return metadata.MD{} }
func (p *parkedStream) CloseSend() error             { return nil }
func (p *parkedStream) Context() context.Context     { return p.ctx }
func (p *parkedStream) SendMsg(any) error            { return p.ctx.Err() }
func (p *parkedStream) RecvMsg(any) error {
	<-p.ctx.Done()
	return status.FromContextError(p.ctx.Err()).Err()
}
