"""Analysis reports of the retention service: cohorts by first-purchase month, task SLA per owner."""
