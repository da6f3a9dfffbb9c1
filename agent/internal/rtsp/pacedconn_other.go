//go:build !linux

package rtsp

import "syscall"

func setLowWater(syscall.RawConn, int) {}
