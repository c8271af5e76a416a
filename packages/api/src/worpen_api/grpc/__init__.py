"""The gRPC driving adapter: the fleet service, its proto mapping and its server."""
