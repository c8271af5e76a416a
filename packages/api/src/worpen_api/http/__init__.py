"""The HTTP driving adapter: one package per feature (its controller and DTOs), and what they share:
wire types, parameters, the OpenAPI plugin and the security middleware."""
