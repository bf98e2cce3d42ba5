package main

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// describe prints a service, method or message as grpcurl does (elements sorted, type names
// fully qualified, no comments: muxs's descriptors carry none).
func describe(descriptor protoreflect.Descriptor) string {
	var text strings.Builder
	switch d := descriptor.(type) {
	case protoreflect.ServiceDescriptor:
		fmt.Fprintf(&text, "%s is a service:\nservice %s {\n", d.FullName(), d.Name())
		for _, method := range sortedMethods(d) {
			fmt.Fprintf(&text, "  %s\n", rpc(method))
		}
		text.WriteString("}\n")
	case protoreflect.MethodDescriptor:
		fmt.Fprintf(&text, "%s is a method:\n%s\n", d.FullName(), rpc(d))
	case protoreflect.MessageDescriptor:
		fmt.Fprintf(&text, "%s is a message:\nmessage %s {\n", d.FullName(), d.Name())
		var fields []protoreflect.FieldDescriptor
		for i := 0; i < d.Fields().Len(); i++ {
			fields = append(fields, d.Fields().Get(i))
		}
		sort.Slice(fields, func(i, j int) bool { return fields[i].Number() < fields[j].Number() })
		for _, f := range fields {
			text.WriteString("  " + field(f) + "\n")
		}
		text.WriteString("}\n")
	default:
		fail("describe: %s is not a service, method or message", descriptor.FullName())
	}
	return text.String()
}

func sortedMethods(service protoreflect.ServiceDescriptor) []protoreflect.MethodDescriptor {
	var methods []protoreflect.MethodDescriptor
	for i := 0; i < service.Methods().Len(); i++ {
		methods = append(methods, service.Methods().Get(i))
	}
	sort.Slice(methods, func(i, j int) bool { return methods[i].Name() < methods[j].Name() })
	return methods
}

func rpc(method protoreflect.MethodDescriptor) string {
	return fmt.Sprintf("rpc %s ( %s.%s ) returns ( %s.%s );", method.Name(),
		stream(method.IsStreamingClient()), method.Input().FullName(),
		stream(method.IsStreamingServer()), method.Output().FullName())
}

func stream(streaming bool) string {
	if streaming {
		return "stream "
	}
	return ""
}

// field is a field's line in proto3 syntax.
func field(f protoreflect.FieldDescriptor) string {
	kind := f.Kind().String()
	if f.Message() != nil {
		kind = "." + string(f.Message().FullName())
	} else if f.Enum() != nil {
		kind = "." + string(f.Enum().FullName())
	}
	if f.Cardinality() == protoreflect.Repeated {
		kind = "repeated " + kind
	}
	return fmt.Sprintf("%s %s = %d;", kind, f.Name(), f.Number())
}
