"""The container runtime port on Docker engines (the docker SDK)."""
