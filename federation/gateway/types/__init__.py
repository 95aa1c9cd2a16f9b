"""The GraphQL types, one module per area; `federation.gateway.schema` joins their roots."""
