// The Peerway client library.
