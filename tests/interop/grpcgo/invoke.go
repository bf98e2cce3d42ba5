package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// codec marshals with google.golang.org/protobuf: grpc-go 1.33's own codec uses
// github.com/golang/protobuf 1.3, which cannot marshal dynamicpb messages.
type codec struct{}

func (codec) Marshal(v interface{}) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (codec) Unmarshal(data []byte, v interface{}) error {
	return proto.Unmarshal(data, v.(proto.Message))
}
func (codec) Name() string { return "proto" }

// invoke calls method with the JSON messages read from in, prints each reply, and returns
// the exit code.
func invoke(ctx context.Context, conn *grpc.ClientConn, method protoreflect.MethodDescriptor, in io.Reader, o options) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	callOptions := []grpc.CallOption{grpc.ForceCodec(codec{})}
	if o.gzip {
		callOptions = append(callOptions, grpc.UseCompressor(gzip.Name))
	}
	desc := &grpc.StreamDesc{
		ClientStreams: method.IsStreamingClient(), ServerStreams: method.IsStreamingServer(),
	}
	path := fmt.Sprintf("/%s/%s", method.Parent().FullName(), method.Name())
	stream, err := conn.NewStream(ctx, desc, path, callOptions...)
	if err != nil {
		return failed(err)
	}
	go send(stream, method, in)
	for replies := 1; ; replies++ {
		reply := dynamicpb.NewMessage(method.Output())
		err := stream.RecvMsg(reply)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			return failed(err)
		}
		fmt.Println(asJSON(reply))
		if replies == o.cancelAfter {
			cancel()
			for err == nil { // skip the replies that came before the cancel
				err = stream.RecvMsg(dynamicpb.NewMessage(method.Output()))
			}
			return failed(err)
		}
	}
}

// send sends each JSON message of in as it is read (an empty one to a method that takes one
// request and got none), then half-closes the call.
func send(stream grpc.ClientStream, method protoreflect.MethodDescriptor, in io.Reader) {
	decoder := json.NewDecoder(in)
	sent := 0
	for ; ; sent++ {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			fail("Error: the requests are not JSON: %v", err)
		}
		request := dynamicpb.NewMessage(method.Input())
		if err := protojson.Unmarshal(raw, request); err != nil {
			fail("Error: a request is not a %s: %v", method.Input().FullName(), err)
		}
		if stream.SendMsg(request) != nil {
			return // the call is over: RecvMsg has its status
		}
	}
	if sent == 0 && !method.IsStreamingClient() {
		if stream.SendMsg(dynamicpb.NewMessage(method.Input())) != nil {
			return
		}
	}
	stream.CloseSend()
}

// asJSON is a message in grpcurl's JSON: indented by two spaces. Reformatted with
// encoding/json, as protojson varies its whitespace on purpose.
func asJSON(message proto.Message) string {
	compact, err := protojson.Marshal(message)
	if err != nil {
		fail("Error: a reply cannot be shown as JSON: %v", err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, compact, "", "  "); err != nil {
		fail("Error: %v", err)
	}
	return indented.String()
}

// failed prints a call's status as grpcurl does and returns grpcurl's exit code for it.
func failed(err error) int {
	s := status.Convert(err)
	fmt.Fprintf(os.Stderr, "ERROR:\n  Code: %s\n  Message: %s\n", s.Code(), s.Message())
	if details := s.Proto().GetDetails(); len(details) > 0 {
		fmt.Fprintln(os.Stderr, "  Details:")
		for i, detail := range details {
			fmt.Fprintf(os.Stderr, "  %d) %s\n", i+1, detail.GetTypeUrl())
		}
	}
	return 64 + int(s.Code())
}
