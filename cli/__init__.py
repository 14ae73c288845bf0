"""`crm`: the operator command line. Talks to the gateway only (imports, timelines, alerts)."""
