"""Customers: create, read, list, change and bulk-import them; contacts, tags and attributes."""
