"""The customer's scored value tier, kept from the scoring service's score.updated events."""
