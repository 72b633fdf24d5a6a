// Package transferwire holds the bounds of the transfer API's Import and
// Export streams, which both ends must agree on beyond the messages
// themselves. The daemon's service (services/transfer) and the client
// library use it, so that the client does not link the service's
// implementation (registry client, decompressors). The conversion of
// progress reports is in internal/apiconv with every other conversion.
package transferwire

const (
	// ChunkSize bounds the archive bytes of one Import request or Export
	// response, far below ttrpc's 4 MiB message limit.
	ChunkSize = 1 << 20
	// ImportWindow is how many archive bytes an Import client may have
	// sent beyond the daemon's last acknowledgement (received). ttrpc
	// streams have no flow control of their own: a receiver that leaves
	// its 64 messages of buffer full for a second fails the stream.
	ImportWindow = 4 << 20
)
