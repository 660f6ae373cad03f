package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// PprofAddrVariable names the environment variable that, when set to a
// listen address, serves net/http/pprof there: a debug port of its own,
// never the API's. Bind it to loopback (127.0.0.1:6060): profiles reveal
// the process's internals. Unset (the default), nothing is served.
const PprofAddrVariable = "PAYRAIL_PPROF_ADDR"

// servePprof starts the profiling listener if PprofAddrVariable is set,
// and returns the function that stops it.
func servePprof(log *slog.Logger) (stop func(), err error) {
	addr := os.Getenv(PprofAddrVariable)
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof listener stopped", "error", err)
		}
	}()
	log.Warn("serving net/http/pprof: a debug port, keep it private", "addr", ln.Addr().String(), "variable", PprofAddrVariable)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
