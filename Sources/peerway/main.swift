print("peerway")
