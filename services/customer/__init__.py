"""Customer master: who the customers are, their owner, status lifecycle, and their consent per contact
channel with contact preferences (consent/, docs/consent.md)."""
