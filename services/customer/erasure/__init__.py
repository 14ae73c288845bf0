"""GDPR erasure of a customer's personal data and the services' receipts."""
