package main

import (
	"time"
	_ "unsafe" // go:linkname
)

// keepaliveMinPingTime is grpc-go's floor under a client's keepalive time (10 s): grpc-go's
// own tests lower it the same way, so that a test sees pings within a second, not minutes.
//
//go:linkname keepaliveMinPingTime google.golang.org/grpc/internal.KeepaliveMinPingTime
var keepaliveMinPingTime time.Duration

// lowerKeepaliveFloor lets a keepalive time as short as time through.
func lowerKeepaliveFloor(time time.Duration) {
	if time < keepaliveMinPingTime {
		keepaliveMinPingTime = time
	}
}
