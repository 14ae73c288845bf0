"""The loyalty member tier of each customer, from loyalty.tier_changed, so campaigns can target it."""
