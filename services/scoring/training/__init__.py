"""Model versions (value and churn), the jobs that fit them, and which version is active."""
