// Command grpcgo is a small grpcurl built on grpc-go, the engine under grpcurl: it lists and
// describes services through server reflection and calls any method with JSON messages, so
// that tests/interop/test_grpcgo.py can run the grpcurl commands muxs's docs give.
//
//	grpcgo [flags] ADDRESS list [SERVICE]
//	grpcgo [flags] ADDRESS describe SYMBOL
//	grpcgo [flags] ADDRESS SERVICE/METHOD
//
// Flags as grpcurl's: -plaintext (required: no TLS here), -unix, -H 'name: value'
// (repeatable), -d (JSON messages, or "@" to read them from stdin as they come), -max-time,
// -keepalive-time. Its own: -gzip (compress requests), -cancel-after N (cancel the call once
// N replies came), and SIGINT cancels a call in flight. Output is grpcurl's: replies as
// indented JSON; a failed call prints grpcurl's "ERROR:" block on stderr and exits 64 plus
// its status code; any other failure exits 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers gzip: replies in it are inflated
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

type options struct {
	plaintext, unix, gzip bool
	headers               headers
	data                  string
	maxTime, keepalive    float64
	cancelAfter           int
}

func main() {
	var o options
	flag.BoolVar(&o.plaintext, "plaintext", false, "use plain-text HTTP/2 (required)")
	flag.BoolVar(&o.unix, "unix", false, "ADDRESS is a Unix socket's path")
	flag.Var(&o.headers, "H", "a request header, 'name: value' (repeatable)")
	flag.StringVar(&o.data, "d", "", "request messages as JSON; @: read them from stdin")
	flag.Float64Var(&o.maxTime, "max-time", 0, "seconds the whole operation may take")
	flag.Float64Var(&o.keepalive, "keepalive-time", 0, "seconds between keepalive pings")
	flag.BoolVar(&o.gzip, "gzip", false, "compress request messages with gzip")
	flag.IntVar(&o.cancelAfter, "cancel-after", 0, "cancel the call after this many replies")
	flag.Parse()
	args := flag.Args()
	if len(args) < 2 || !o.plaintext {
		fail("usage: grpcgo -plaintext [flags] ADDRESS (list [SERVICE] | describe SYMBOL | SERVICE/METHOD)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, seconds(o.maxTime))
		defer cancel()
	}
	for _, header := range o.headers {
		name, value, found := strings.Cut(header, ":")
		if !found {
			fail("a header is 'name: value', not %q", header)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, strings.TrimSpace(name), strings.TrimSpace(value))
	}
	conn, err := dial(ctx, args[0], o)
	if err != nil {
		fail("Failed to dial target host %q: %v", args[0], err)
	}
	defer conn.Close()
	os.Exit(run(ctx, conn, args[1:], o))
}

func dial(ctx context.Context, address string, o options) (*grpc.ClientConn, error) {
	dialOptions := []grpc.DialOption{grpc.WithInsecure(), grpc.WithBlock()}
	if o.unix {
		dialOptions = append(dialOptions, grpc.WithContextDialer(
			func(ctx context.Context, path string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			}))
	}
	if o.keepalive > 0 {
		lowerKeepaliveFloor(seconds(o.keepalive))
		// The ping's answer may take grpc-go's default 20 s (grpcurl waits keepalive-time):
		// a busy test machine must not pass for a dead server.
		dialOptions = append(dialOptions, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: seconds(o.keepalive), Timeout: 20 * time.Second,
		}))
	}
	return grpc.DialContext(ctx, address, dialOptions...)
}

// run does what args ask on conn; the process's exit code.
func run(ctx context.Context, conn *grpc.ClientConn, args []string, o options) int {
	reflector, err := newReflector(ctx, conn)
	if err != nil {
		fail("Failed to start reflection: %v", err)
	}
	defer reflector.close()
	switch {
	case args[0] == "list" && len(args) == 1:
		names, err := reflector.services()
		if err != nil {
			fail("Failed to list services: %v", err)
		}
		fmt.Println(strings.Join(names, "\n"))
	case args[0] == "list" && len(args) == 2:
		service, err := reflector.service(args[1])
		if err != nil {
			fail("Failed to list methods of %q: %v", args[1], err)
		}
		for _, method := range sortedMethods(service) {
			fmt.Println(method.FullName())
		}
	case args[0] == "describe" && len(args) == 2:
		descriptor, err := reflector.symbol(args[1])
		if err != nil {
			fail("Failed to resolve symbol %q: %v", args[1], err)
		}
		fmt.Print(describe(descriptor))
	case len(args) == 1:
		method, err := reflector.method(strings.Replace(args[0], "/", ".", 1))
		if err != nil {
			fail("Failed to resolve method %q: %v", args[0], err)
		}
		return invoke(ctx, conn, method, requests(o.data), o)
	default:
		fail("unknown command: %s", strings.Join(args, " "))
	}
	return 0
}

// requests is where the request messages come from: -d's text, or stdin for "@".
func requests(data string) io.Reader {
	if data == "@" {
		return os.Stdin
	}
	return strings.NewReader(data)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
