"""The public HTTP API: routes /api/v1 to the services, aggregates health; holds no domain data."""
