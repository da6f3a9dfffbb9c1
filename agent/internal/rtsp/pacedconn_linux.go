package rtsp

import "syscall"

// setLowWater sets SO_RCVLOWAT: epoll then reports the socket readable only
// once this much is buffered, so arriving packets do not wake the poller.
// Paced reads do not depend on it (they never wait in the poller); failing
// to set it only costs wake-ups.
func setLowWater(raw syscall.RawConn, n int) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	})
}
