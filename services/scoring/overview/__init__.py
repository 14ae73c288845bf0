"""The customer pyramid, lifecycle funnel and churn-risk distribution in one pass over the current scores."""
