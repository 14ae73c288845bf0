"""The platform's domain services; each imports only itself and servicekit."""
