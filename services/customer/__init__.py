"""Customer master: who the customers are, their owner, status lifecycle and consent."""
