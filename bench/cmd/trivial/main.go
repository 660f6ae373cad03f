// Command trivial serves bench.TrivialHandler, the baseline of the HTTP
// load comparison: run it and the reference server under the same load
// (wrk with bench/wrk/payments.lua, or bench/cmd/loadgen), each pinned to
// one core, and compare. See bench/README.md.
//
//	taskset -c 1 go run ./bench/cmd/trivial -addr 127.0.0.1:8090
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/payrail/payrail/bench"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.Handle("POST /payments", bench.TrivialHandler())
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("trivial JSON handler on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
