"""Customer features built from events, and the churn, health and value scores computed from them."""
