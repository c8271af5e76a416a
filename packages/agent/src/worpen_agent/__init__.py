"""worpen-agent: a node's metrics and Docker engine, served to Worpen over one outbound gRPC stream."""
