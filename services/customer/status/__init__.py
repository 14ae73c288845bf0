"""The customer lifecycle: status changes, one by one or in bulk, and the status history."""
