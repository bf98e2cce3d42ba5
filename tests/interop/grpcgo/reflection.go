package main

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// reflector asks a server's reflection service (v1alpha: grpc-go 1.33 has no v1 client)
// for its services and the files that define them.
type reflector struct {
	stream rpb.ServerReflection_ServerReflectionInfoClient
	cancel context.CancelFunc
	files  map[string]*descriptorpb.FileDescriptorProto
}

func newReflector(ctx context.Context, conn *grpc.ClientConn) (*reflector, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &reflector{stream, cancel, map[string]*descriptorpb.FileDescriptorProto{}}, nil
}

func (r *reflector) close() {
	r.stream.CloseSend()
	r.cancel()
}

func (r *reflector) ask(request *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	if err := r.stream.Send(request); err != nil {
		return nil, err
	}
	response, err := r.stream.Recv()
	if err != nil {
		return nil, err
	}
	if refusal := response.GetErrorResponse(); refusal != nil {
		return nil, fmt.Errorf("%s", refusal.ErrorMessage)
	}
	return response, nil
}

// services are the names of the services the server lists, sorted.
func (r *reflector) services() ([]string, error) {
	response, err := r.ask(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_ListServices{},
	})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, service := range response.GetListServicesResponse().GetService() {
		names = append(names, service.Name)
	}
	sort.Strings(names)
	return names, nil
}

// symbol is the descriptor of a service, method, message, enum or field.
func (r *reflector) symbol(name string) (protoreflect.Descriptor, error) {
	if err := r.fetch(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: name},
	}); err != nil {
		return nil, err
	}
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: r.known()})
	if err != nil {
		return nil, err
	}
	return files.FindDescriptorByName(protoreflect.FullName(name))
}

func (r *reflector) service(name string) (protoreflect.ServiceDescriptor, error) {
	descriptor, err := r.symbol(name)
	if err != nil {
		return nil, err
	}
	if service, ok := descriptor.(protoreflect.ServiceDescriptor); ok {
		return service, nil
	}
	return nil, fmt.Errorf("%s is not a service", name)
}

// method is a service's method, found as grpcurl finds it: the service, then its method.
func (r *reflector) method(name string) (protoreflect.MethodDescriptor, error) {
	service, err := r.service(string(protoreflect.FullName(name).Parent()))
	if err != nil {
		return nil, err
	}
	if method := service.Methods().ByName(protoreflect.FullName(name).Name()); method != nil {
		return method, nil
	}
	return nil, fmt.Errorf("%s has no method %s", service.FullName(), protoreflect.FullName(name).Name())
}

// fetch adds the files a request returns, then asks for any dependency still missing.
func (r *reflector) fetch(request *rpb.ServerReflectionRequest) error {
	response, err := r.ask(request)
	if err != nil {
		return err
	}
	for _, data := range response.GetFileDescriptorResponse().GetFileDescriptorProto() {
		file := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(data, file); err != nil {
			return err
		}
		r.files[file.GetName()] = file
	}
	for _, file := range r.known() {
		for _, dependency := range file.Dependency {
			if _, ok := r.files[dependency]; !ok {
				if err := r.fetch(&rpb.ServerReflectionRequest{
					MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dependency},
				}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (r *reflector) known() []*descriptorpb.FileDescriptorProto {
	var files []*descriptorpb.FileDescriptorProto
	for _, file := range r.files {
		files = append(files, file)
	}
	return files
}
